// The gallery's tiles that are waiting or classifying update in place when their result
// arrives (through PetsiteLive: one request for all of them, see live-status.js).
(function () {
  "use strict";
  if (!window.PetsiteLive) return;

  function percent(p) { return Math.round(p * 100) + "%"; }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function update(tile, status) {
    if (!status) { tile.remove(); return; } // deleted meanwhile
    const caption = tile.querySelector(".caption");
    const date = caption.querySelector("small");
    const parts = [];
    // The words are the status JSON's (classifier/verdicts.py), as _tile_caption.html shows them.
    if (status.status === "done") {
      parts.push(element("strong", "breed verdict-" + (status.verdict || "confident"), status.headline));
      if (status.confident) parts.push(element("span", "confidence", percent(status.confidence)));
      const image = tile.querySelector("img");
      if (image) image.alt = status.headline + ", uploaded " + status.display.uploaded;
    } else {
      parts.push(element("span", "status status-" + status.status, status.status_display));
    }
    if (date) parts.push(date);
    caption.replaceChildren.apply(caption, parts);
    tile.dataset.finished = String(status.finished);
  }

  document.querySelectorAll("[data-live-gallery] .tile[data-finished='false']").forEach(function (tile) {
    window.PetsiteLive.watch(tile.dataset.id, function (status) { update(tile, status); });
  });
})();
