// Loaded (not deferred) in every page's head: marks the page as scripted before it is
// drawn, so that site.css shows what needs the scripts only with them and hides the rest.
// A file rather than an inline script: the Content-Security-Policy allows no inline code.
document.documentElement.classList.add("js");
