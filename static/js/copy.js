// "Copy" buttons (the API token page): a button with data-copy="#field" puts that field's
// value on the clipboard and says so in its status element (data-copy-status, a live
// region). Where the Clipboard API is missing (a page served over plain HTTP from another
// machine) or refused, the field's text is selected and copied the older way, or left
// selected for the person to copy.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  const status = document.querySelector(button.dataset.copyStatus || "[data-copy-status]");
  if (!field) return;
  const say = (words) => { if (status) status.textContent = words; };
  try {
    if (!navigator.clipboard) throw new Error("no Clipboard API");
    await navigator.clipboard.writeText(field.value);
    say("Copied to the clipboard.");
  } catch {
    field.focus();
    field.select();
    say(document.execCommand("copy") ? "Copied to the clipboard." : "Selected: press Ctrl+C (⌘C on a Mac) to copy it.");
  }
});
