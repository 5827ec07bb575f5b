// Follows a training run on its page: polls the run's status JSON and updates the stage,
// how much of the whole run is done, epoch, step, loss, accuracy and time left in place
// (the server words them: training/services.py, run_status); when the run finishes,
// reloads the page once to show the comparison and the promotion form.
(function () {
  "use strict";
  const root = document.getElementById("run-status");
  if (!root || root.dataset.finished === "true") return;
  const url = root.dataset.statusUrl;

  function set(id, text) { document.getElementById(id).textContent = text; }
  function percent(p) { return Math.round(p * 100) + "%"; }

  function render(data) {
    const p = data.progress;
    set("run-state", data.state_display);
    set("run-stage", p.stage_label || "Waiting for the training worker");
    const done = p.percent != null ? p.percent : 0;
    document.getElementById("run-bar").value = done;
    set("run-percent", done + "% of the whole run");
    set("run-epoch", p.epoch ? p.epoch + " of " + p.epochs : "–");
    set("run-step", p.steps ? p.step + " of " + p.steps : "–");
    set("run-loss", p.loss != null ? p.loss.toFixed(3) : "–");
    set("run-accuracy", p.accuracy != null ? percent(p.accuracy) : "–");
    set("run-eta", p.eta_words || "–");
    set("run-message", data.message);
    if (p.history && p.history.length) {
      document.getElementById("run-epochs-wrap").hidden = false;
      const note = document.getElementById("run-epochs-note");
      note.hidden = p.history.length <= 10;
      document.getElementById("run-epochs-count").textContent = p.history.length;
      document.querySelector("#run-epochs tbody").replaceChildren(...p.history.slice(-10).map(function (row) {
        const tr = document.createElement("tr");
        [row.epoch, row.stage_label, row.train_loss.toFixed(4), row.valid_loss.toFixed(4), row.accuracy.toFixed(4),
          row.time.toFixed(1) + " s"].forEach(function (value) {
          const td = document.createElement("td");
          td.textContent = value;
          tr.appendChild(td);
        });
        return tr;
      }));
    }
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        render(data);
        if (data.finished) { window.location.reload(); return; }
      }
    } catch (error) { /* offline for a moment: try again */ }
    window.setTimeout(poll, 2000);
  }
  window.setTimeout(poll, 2000);
})();
