// The manager console's only script (no inline script: the CSP forbids it).
// A "check all" box above each table of checkboxes; everything works without it.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("table").forEach(function (table) {
    var boxes = table.querySelectorAll("tbody input[type=checkbox]");
    var head = table.querySelector("thead th");
    if (boxes.length < 2 || !head || head.textContent.trim() !== "") return;
    var all = document.createElement("input");
    all.type = "checkbox";
    all.className = "check-all";
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
    });
    head.appendChild(all);
  });
});
