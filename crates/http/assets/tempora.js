// tempora web UI. htmx's own indicator styles would be an inline <style>, which the pages'
// Content-Security-Policy refuses: tempora.css has what the pages need.
htmx.config.includeIndicatorStyles = false;
// Follow a run's output as it arrives (unless the reader paused following).
document.addEventListener("htmx:sseMessage", function () {
  var out = document.getElementById("output");
  var follow = document.getElementById("follow");
  if (out && (!follow || follow.checked)) { out.scrollTop = out.scrollHeight; }
});
// Error answers carry what went wrong (a field's message, a refusal): show them as htmx shows
// any answer, where the server says (a 204 changes nothing on the page).
htmx.config.responseHandling = [
  { code: "204", swap: false },
  { code: "[23]..", swap: true },
  { code: "[45]..", swap: true, error: true },
];
