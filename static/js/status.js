// Polls the image's status JSON until classification finishes, then shows the result
// in place: breed, top-k with probability bars, model version, and the feedback form
// (which waits in a <template> until there is a result to judge). No page reload.
(function () {
  "use strict";
  const root = document.getElementById("pet");
  if (!root || root.dataset.finished === "true") return;

  const url = root.dataset.statusUrl;
  const SVG = "http://www.w3.org/2000/svg";
  let delay = 1000;

  function percent(p) { return Math.round(p * 100) + "%"; }

  // The words come from the status JSON (data.display: classifier/verdicts.py), the same
  // ones the page's template shows on a reload; this only puts them in place.
  function render(data) {
    const status = document.getElementById("status");
    status.textContent = data.status_display;
    status.className = "status status-" + data.status;
    const message = document.getElementById("message");
    message.textContent = data.message;
    message.hidden = !data.message;
    if (data.status !== "done") return;
    const display = data.display;
    const breed = document.getElementById("breed");
    breed.textContent = data.headline;
    breed.className = "verdict-" + (data.verdict || "confident");
    document.title = document.title.replace(/^.*?(?= · |$)/, data.headline);
    const note = document.getElementById("verdict-note");
    note.textContent = display.note;
    note.hidden = !display.note;
    document.getElementById("model-version").textContent = data.model_version || "–";
    const title = document.getElementById("top-k-title");
    title.textContent = display.top_k_title;
    title.hidden = false;
    const list = document.getElementById("top-k");
    list.className = "top-k top-k-" + (data.verdict || "confident");
    list.replaceChildren(...data.top_k.map(function (row) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = row.name;
      li.append(name);
      // A photo that does not look like a pet: its breeds are only the closest, no bars.
      if (!display.top_k_bars) return li;
      // The same bar as the page's: an SVG whose rect is as wide as the probability
      // (an attribute, not a style: the Content-Security-Policy allows no inline style).
      const bar = document.createElementNS(SVG, "svg");
      bar.setAttribute("class", "bar");
      bar.setAttribute("viewBox", "0 0 100 1");
      bar.setAttribute("preserveAspectRatio", "none");
      bar.setAttribute("aria-hidden", "true");
      bar.setAttribute("focusable", "false");
      const fill = document.createElementNS(SVG, "rect");
      fill.setAttribute("width", String(Math.round(row.probability * 100)));
      fill.setAttribute("height", "1");
      bar.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = percent(row.probability);
      li.append(bar, pct);
      return li;
    }));
    const photo = document.getElementById("photo-img");
    if (photo) photo.alt = data.headline + ", uploaded " + display.uploaded;
    const later = document.getElementById("feedback-later");
    if (later) {
      const form = later.content.cloneNode(true);
      const correct = form.querySelector('.choice-words[data-answer="correct"]');
      if (correct) correct.textContent = display.correct_choice;
      later.replaceWith(form);
      window.PetsiteBreedSearch(document.getElementById("feedback"));
    }
    // heatmap.js offers "Show why" now that there is an answer to explain.
    document.dispatchEvent(new CustomEvent("petsite:answer", { detail: data }));
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        render(data);
        if (!data.finished) { delay = Math.min(delay * 1.5, 10000); setTimeout(poll, delay); }
      })
      .catch(function () { delay = Math.min(delay * 2, 30000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();

// The feedback form's breed search: typing hides the breeds that do not match. The box is
// hidden in the page's HTML (it does nothing without this script) and shown here.
window.PetsiteBreedSearch = function (scope) {
  "use strict";
  if (!scope) return;
  scope.querySelectorAll("input.breed-search").forEach(function (input) {
    const select = document.getElementById(input.dataset.filters);
    if (!select) return;
    input.hidden = false;
    input.addEventListener("input", function () {
      const needle = input.value.trim().toLowerCase();
      let first = null;
      select.querySelectorAll("option").forEach(function (option) {
        const match = !option.value || option.textContent.toLowerCase().includes(needle);
        option.hidden = !match;
        if (match && option.value && !first) first = option;
      });
      if (needle && first) select.value = first.value;
      const wrong = scope.querySelector('input[name="answer"][value="wrong"]');
      if (wrong && needle) wrong.checked = true;
    });
  });
};
window.PetsiteBreedSearch(document);
