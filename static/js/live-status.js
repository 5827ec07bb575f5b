// Live status of the photos on a page: ONE small JSON request for all the unfinished ones
// (GET <data-statuses-url>?ids=1,2,3), never one per photo. It polls with back-off (1 s, then
// 1.5 times longer each time, up to 15 s; doubling up to 60 s after an error), pauses while
// the tab is hidden, and stops when nothing is left to watch.
//
//   PetsiteLive.watch(id, callback)   callback(status) on each answer for that photo, where
//                                     status is the JSON of views.image_status, or null when
//                                     the photo is gone (deleted); it is dropped once finished.
(function () {
  "use strict";
  const FIRST_DELAY = 1000;
  const MAX_DELAY = 15000;
  const MAX_DELAY_AFTER_ERROR = 60000;
  const IDS_PER_REQUEST = 100; // what the server answers at most (views.MAX_STATUS_IDS)

  const watched = new Map(); // id -> [callback, ...]
  let delay = FIRST_DELAY;
  let timer = null;
  let inFlight = false;

  function statusesUrl() {
    const holder = document.querySelector("[data-statuses-url]");
    return holder ? holder.dataset.statusesUrl : null;
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function settle(id, status) {
    (watched.get(id) || []).forEach(function (callback) { callback(status); });
    if (!status || status.finished) watched.delete(id);
  }

  function poll() {
    timer = null;
    const url = statusesUrl();
    if (!watched.size || !url) return;
    if (document.hidden) return; // visibilitychange starts it again
    const ids = Array.from(watched.keys()).slice(0, IDS_PER_REQUEST);
    inFlight = true;
    fetch(url + "?ids=" + ids.join(","), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        const answered = new Set();
        data.images.forEach(function (status) {
          answered.add(String(status.id));
          settle(String(status.id), status);
        });
        // Asked for and not answered: deleted meanwhile (or never the user's).
        ids.filter(function (id) { return !answered.has(id); }).forEach(function (id) { settle(id, null); });
        delay = Math.min(delay * 1.5, MAX_DELAY);
      })
      .catch(function () { delay = Math.min(delay * 2, MAX_DELAY_AFTER_ERROR); })
      .finally(function () {
        inFlight = false;
        if (watched.size) schedule(delay);
      });
  }

  function watch(id, callback) {
    id = String(id);
    if (!watched.has(id)) watched.set(id, []);
    watched.get(id).push(callback);
    delay = FIRST_DELAY; // something new to watch: look again soon
    if (!inFlight) schedule(delay);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && watched.size && !timer && !inFlight) schedule(0);
  });

  window.PetsiteLive = { watch: watch };
})();
