// The gallery's tiles that are waiting or classifying update in place when their result
// arrives (through PetsiteLive: one request for all of them, see live-status.js), and photos
// uploaded from the gallery's own form join the grid without a reload.
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

  function watch(tile) {
    window.PetsiteLive.watch(tile.dataset.id, function (status) { update(tile, status); });
  }

  document.querySelectorAll("[data-live-gallery] .tile[data-finished='false']").forEach(watch);

  // A photo uploaded from this page (upload.js) joins the grid at once, first, as the server
  // rendered its tile, then updates like the others; only where the grid shows the newest
  // photos first, unfiltered (data-new-tiles), and only once: a photo already in the gallery keeps its place.
  document.addEventListener("petsite:uploaded", function (event) {
    const grid = document.querySelector("[data-live-gallery][data-new-tiles]");
    const result = event.detail;
    if (!grid || !result.created || !result.tile || grid.querySelector(".tile[data-id='" + result.id + "']")) return;
    const holder = document.createElement("template");
    holder.innerHTML = result.tile.trim();
    const tile = holder.content.firstElementChild;
    grid.prepend(tile);
    grid.hidden = false;
    const emptyNote = document.querySelector("[data-empty-note]");
    if (emptyNote) emptyNote.hidden = true; // "No photos yet" is no longer true
    if (tile.dataset.finished === "false") watch(tile);
  });
})();
