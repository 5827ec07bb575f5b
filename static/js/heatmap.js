// "Show why": swaps the photo for its Grad-CAM heatmap and back. A worker makes the
// heatmap after the first view of a result, so until the page knows its address this
// asks the status JSON every 3 s (five minutes at most: a busy worker may take a while)
// and shows the button when it is there.
(function () {
  "use strict";
  const figure = document.getElementById("photo");
  const root = document.getElementById("pet");
  if (!figure || !root) return;
  const photo = document.getElementById("photo-img");
  const heatmap = document.getElementById("heatmap-img");
  const toggle = document.getElementById("heatmap-toggle");
  const note = document.getElementById("heatmap-note");
  let tries = 0;

  function ready(url) {
    heatmap.src = url;
    toggle.hidden = false;
  }

  toggle.addEventListener("click", function () {
    const showing = toggle.getAttribute("aria-pressed") === "true";
    toggle.setAttribute("aria-pressed", String(!showing));
    toggle.textContent = showing ? "Show why" : "Show the photo";
    heatmap.hidden = showing;
    note.hidden = showing;
    photo.hidden = !showing;
  });

  function ask() {
    fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        if (data.heatmap_url) { ready(data.heatmap_url); return; }
        if (data.status === "failed") return;
        if (++tries < 100) setTimeout(ask, 3000);
      })
      .catch(function () { if (++tries < 100) setTimeout(ask, 6000); });
  }

  if (figure.dataset.heatmapUrl) ready(figure.dataset.heatmapUrl);
  else setTimeout(ask, 2000);
})();
