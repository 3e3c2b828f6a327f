// Alert page: the print button, and the secondary-cause list enabled only for "agree: secondary cause".
(function () {
  "use strict";
  var print = document.getElementById("print");
  if (print) { print.addEventListener("click", function () { window.print(); }); }
  var cause = document.getElementById("cause");
  var radios = document.querySelectorAll('input[name="verdict"]');
  function sync() {
    var chosen = document.querySelector('input[name="verdict"]:checked');
    var secondary = chosen && chosen.value === "agree-secondary";
    if (cause) { cause.disabled = !secondary; cause.required = !!secondary; }
  }
  Array.prototype.forEach.call(radios, function (r) { r.addEventListener("change", sync); });
  sync();
})();
