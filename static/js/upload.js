// The upload form as a drop zone: every file chosen or dropped gets a card with a preview,
// is checked here (type and size; the server stays the authority), sent with a progress bar
// and then shows its status live (waiting, classifying, the breed) without a page reload.
//
// One request per file, two at a time: the progress bar is exactly that file's, a refused,
// too large or failed file fails alone and can be tried again alone, each request stays
// within one photo's size, and the upload rate (which counts photos) is met per photo: on
// 429 (and on 503, while the site is briefly unavailable) the queue waits as long as
// Retry-After says, then goes on by itself.
// "20 at a time" (data-max-files, the server's PETSITE_MAX_FILES_PER_UPLOAD) is one rule for both
// ways: here at most that many photos are on their way (waiting to be sent or sending) and the
// others wait on their cards and follow as those finish; without JavaScript the same form posts
// every file at once, and the server stores the first ones and names the others as not sent.
(function () {
  "use strict";
  const PARALLEL = 2;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function size(bytes) {
    if (bytes >= 1024 * 1024) return (bytes / 1024 / 1024).toFixed(1) + " MB";
    if (bytes >= 1024) return Math.round(bytes / 1024) + " KB";
    return bytes + " bytes";
  }

  function percent(p) { return Math.round(p * 100) + "%"; }

  function Uploader(form) {
    const input = form.querySelector("input[type=file]");
    const zone = form.querySelector("[data-dropzone]");
    const cards = form.nextElementSibling && form.nextElementSibling.matches("[data-upload-cards]")
      ? form.nextElementSibling : null;
    const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    const maxBytes = Number(form.dataset.maxBytes);
    // What the server takes (classifier/formats.py): MIME types and extensions, as the file input's accept.
    const accepted = form.dataset.accept.split(",");
    const formatWords = form.dataset.formats;
    const atATime = Number(form.dataset.maxFiles) || 20;
    const held = []; // photos past atATime: they follow as the ones on their way finish
    let onTheirWay = 0; // photos waiting to be sent or sending
    const queue = [];
    let running = 0;
    let pausedUntil = 0;
    let resumeTimer = null;

    // --- checks before sending ----------------------------------------------------------
    function refusal(file) {
      // By type or by name: not every system knows a type for HEIC or AVIF files.
      const name = file.name.toLowerCase();
      const known = accepted.some(function (entry) {
        return entry.startsWith(".") ? name.endsWith(entry) : file.type === entry;
      });
      if (!known) return "Not sent: this is not a " + formatWords + " photo.";
      if (file.size === 0) return "Not sent: the file is empty.";
      if (file.size > maxBytes) return "Not sent: the file is " + size(file.size) + "; the limit is " + size(maxBytes) + ".";
      return "";
    }

    // --- cards --------------------------------------------------------------------------
    function makeCard(file, withPreview) {
      const card = element("li", "upload-card");
      let preview = element("span", "no-preview");
      if (withPreview) { // only for files that will be sent: no decoding of what is refused here
        const image = element("img");
        image.alt = ""; // the file name beside it says which photo this is
        image.addEventListener("load", function () { URL.revokeObjectURL(image.src); }, { once: true });
        image.addEventListener("error", function () { // a file the browser cannot show (a damaged one)
          URL.revokeObjectURL(image.src);
          image.replaceWith(element("span", "no-preview"));
        }, { once: true });
        image.src = URL.createObjectURL(file);
        preview = image;
      }
      const progress = element("progress");
      progress.max = 100;
      progress.value = 0;
      progress.setAttribute("aria-label", "Sending " + file.name);
      card.append(preview, element("span", "file-name", file.name), progress, element("span", "card-status"));
      cards.hidden = false;
      cards.append(card);
      return card;
    }

    function say(card, text, link) {
      const status = card.querySelector(".card-status");
      status.replaceChildren(document.createTextNode(text));
      if (link) {
        status.append(" ");
        const a = element("a", "", link.text);
        a.href = link.href;
        status.append(a);
      }
    }

    function refuse(card, text, retry) {
      card.classList.add("refused");
      card.querySelector("progress").hidden = true;
      say(card, text);
      if (retry) {
        const again = element("button", "link", "Try again");
        again.type = "button";
        again.addEventListener("click", function () {
          again.remove();
          card.classList.remove("refused");
          card.querySelector("progress").hidden = false;
          take(retry);
        });
        card.querySelector(".card-status").append(" ", again);
      }
    }

    function showStatus(card, status) {
      if (!status) { say(card, "This photo was deleted."); return; }
      const link = { text: "See the photo", href: status.detail_url };
      const note = card.dataset.note || "Uploaded. "; // or "Already in your gallery. "
      if (status.status === "done") {
        say(card, note + status.headline + (status.confident ? ", " + percent(status.confidence) + " sure." : "."), link);
      } else if (status.status === "failed") {
        card.classList.add("refused");
        say(card, note + (status.message || "This photo could not be classified."), link);
      } else if (status.status === "processing") {
        say(card, note + "Classifying…", link);
      } else { // the message says why it waits, when it waits longer than usual or for a model
        say(card, note + (status.message || "Waiting for the classifier…"), link);
      }
    }

    // --- sending ------------------------------------------------------------------------
    function take(item) {
      if (onTheirWay >= atATime) {
        held.push(item);
        say(item.card, "Waiting: " + atATime + " photos go at a time; this one follows.");
        return;
      }
      onTheirWay += 1;
      enqueue(item);
    }

    function finished() { // a photo's way ended (stored, refused or failed): the next one held back follows
      onTheirWay -= 1;
      if (held.length) take(held.shift());
    }

    function enqueue(item) {
      say(item.card, "Waiting to be sent…");
      queue.push(item);
      pump();
    }

    function pump() {
      const wait = pausedUntil - Date.now();
      if (wait > 0) {
        clearTimeout(resumeTimer);
        resumeTimer = setTimeout(pump, wait);
        return;
      }
      while (running < PARALLEL && queue.length) send(queue.shift());
    }

    function send(item) {
      const card = item.card;
      const progress = card.querySelector("progress");
      const data = new FormData();
      data.append("csrfmiddlewaretoken", token);
      data.append("image", item.file, item.file.name);
      const xhr = new XMLHttpRequest();
      running += 1;
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", token);
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) {
          progress.value = Math.round(100 * event.loaded / event.total);
          say(card, "Sending… " + progress.value + "%");
        }
      });
      xhr.addEventListener("load", function () {
        running -= 1;
        if (!answered(item, xhr)) finished(); // else it is sent again: still on its way
        pump();
      });
      xhr.addEventListener("error", function () {
        running -= 1;
        refuse(card, "Not sent: the connection failed.", item);
        finished();
        pump();
      });
      say(card, "Sending…");
      xhr.send(data);
    }

    // Answers that mean "not now": what the card says while the photo waits to be sent again.
    const SEND_AGAIN = {
      429: (seconds) => "Waiting: you have sent many photos in a short time. This one will be sent in " + seconds + " s.",
      503: (seconds) => "Not uploaded yet: the site is briefly unavailable. This photo will be sent again in " + seconds + " s.",
    };

    // What the server said; true when the photo is to be sent again.
    function answered(item, xhr) {
      const card = item.card;
      const progress = card.querySelector("progress");
      if (xhr.status in SEND_AGAIN) { // wait as long as Retry-After says, then send it again
        const seconds = Number(xhr.getResponseHeader("Retry-After")) || 30;
        pausedUntil = Math.max(pausedUntil, Date.now() + seconds * 1000);
        progress.value = 0;
        say(card, SEND_AGAIN[xhr.status](seconds));
        queue.unshift(item);
        return true;
      }
      if (xhr.status === 413) { refuse(card, "Not uploaded: the file is too large for the site."); return; }
      if (xhr.status === 403) { refuse(card, "Not uploaded: your session has expired. Reload the page and log in again."); return; }
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      const result = answer && answer.files && answer.files[0];
      if (!result) {
        const errors = answer && answer.errors && answer.errors.join(" ");
        refuse(card, errors || "Not uploaded: the site could not take it just now.", errors ? null : item);
        return;
      }
      progress.hidden = true;
      if (!result.ok) { refuse(card, result.error); return; }
      if (!result.created) card.dataset.note = "Already in your gallery. ";
      const placeholder = card.querySelector(".no-preview");
      if (placeholder && result.thumbnail_url) { // a photo this browser cannot show (HEIC): the stored one's thumbnail
        const thumbnail = element("img");
        thumbnail.alt = "";
        thumbnail.src = result.thumbnail_url;
        placeholder.replaceWith(thumbnail);
      }
      showStatus(card, result);
      // For the page around the form: the gallery puts the photo into its grid (gallery.js).
      form.dispatchEvent(new CustomEvent("petsite:uploaded", { bubbles: true, detail: result }));
      if (!result.finished) {
        window.PetsiteLive.watch(result.id, function (status) { showStatus(card, status); });
      }
    }

    function add(files) {
      Array.prototype.forEach.call(files, function (file) {
        const problem = refusal(file);
        const card = makeCard(file, !problem);
        if (problem) refuse(card, problem);
        else take({ file: file, card: card });
      });
    }

    // --- wiring -------------------------------------------------------------------------
    input.addEventListener("change", function () {
      add(input.files);
      input.value = ""; // the same files can be chosen again
    });
    form.addEventListener("submit", function (event) { // Enter or a click on the hidden button
      event.preventDefault();
      add(input.files);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      event.stopPropagation();
      add(event.dataTransfer.files);
    });
    return { add: add };
  }

  if (!window.PetsiteLive || !window.FormData) return;
  const uploaders = Array.prototype.map.call(document.querySelectorAll("form[data-upload]"), Uploader);
  if (!uploaders.length) return;
  // Files dropped anywhere else on the page go to the (first) drop zone, not into the browser tab.
  document.addEventListener("dragover", function (event) { event.preventDefault(); });
  document.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) uploaders[0].add(event.dataTransfer.files);
  });
})();
