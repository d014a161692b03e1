// tempora web UI: follow a run's output as it arrives (unless the reader paused following).
document.addEventListener("htmx:sseMessage", function () {
  var out = document.getElementById("output");
  var follow = document.getElementById("follow");
  if (out && (!follow || follow.checked)) { out.scrollTop = out.scrollHeight; }
});
