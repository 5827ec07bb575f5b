// "Show why": swaps the photo for its Grad-CAM heatmap and back. It is offered only once
// the photo has an answer to explain and its heatmap has loaded, never before: a photo
// still waiting has nothing to explain (status.js says "petsite:answer" when the answer
// arrives). A worker makes the heatmap only when asked: this page asks with a POST to
// data-explain-url once it shows an answer without one (reading the page or its status
// asks for nothing), then, until it knows the heatmap's address, asks the status JSON
// every 3 s (five minutes at most: a busy worker may take a while), saying meanwhile that
// it is being made.
(function () {
  "use strict";
  const figure = document.getElementById("photo");
  const root = document.getElementById("pet");
  if (!figure || !root) return;
  const photo = document.getElementById("photo-img");
  const heatmap = document.getElementById("heatmap-img");
  const toggle = document.getElementById("heatmap-toggle");
  const note = document.getElementById("heatmap-note");
  const wait = document.getElementById("heatmap-wait");
  let tries = 0;
  let asking = false;

  function load(url) {
    heatmap.addEventListener("load", function () {
      toggle.hidden = false;
      wait.hidden = true;
    }, { once: true });
    heatmap.addEventListener("error", function () { wait.hidden = true; }, { once: true });
    heatmap.src = url;
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
    asking = true;
    fetch(root.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        if (data.status === "done" && data.heatmap_url) { load(data.heatmap_url); return; }
        // Failed, or no model to explain it (deleted): no heatmap will come.
        if (data.status === "failed" || !data.model_version || ++tries >= 100) { wait.hidden = true; return; }
        // Ask again now and then: a request the broker missed (it was away) is not sent twice otherwise.
        if (tries % 20 === 0) { requestHeatmap(); return; }
        setTimeout(ask, 3000);
      })
      .catch(function () {
        if (++tries < 100) setTimeout(ask, 6000);
        else wait.hidden = true;
      });
  }

  // The POST that asks a worker for the heatmap; then the status JSON says when it is there.
  function requestHeatmap() {
    asking = true;
    wait.hidden = false;
    fetch(root.dataset.explainUrl, {
      method: "POST", headers: { Accept: "application/json", "X-CSRFToken": root.dataset.csrf },
      credentials: "same-origin",
    })
      .then(function (r) {
        if (r.status === 409) throw new Error("nothing to explain"); // no result: no heatmap will come
        if (!r.ok) return null; // the server is busy or away: the polls below ask again later
        return r.json();
      })
      .then(function (data) {
        if (data && data.heatmap_url) { load(data.heatmap_url); return; }
        setTimeout(ask, 2000);
      })
      .catch(function () { wait.hidden = true; });
  }

  function answered(data) {
    if (data.display && data.display.heatmap_alt) heatmap.alt = data.display.heatmap_alt;
    if (asking) return;
    if (data.heatmap_url) { load(data.heatmap_url); return; }
    requestHeatmap();
  }

  if (figure.dataset.heatmapUrl) load(figure.dataset.heatmapUrl);
  else if (figure.dataset.answered === "true") requestHeatmap();
  else document.addEventListener("petsite:answer", function (event) { answered(event.detail); }, { once: true });
})();
