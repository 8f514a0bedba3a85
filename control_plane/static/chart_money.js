// What the consoles' charts (dashboard.js, admin_overview.js) share: USD text for exact nano-USD
// integers (tooltips) and for the axis's ticks.
var tollgateMoney = (function () {
  "use strict";
  // Exact decimal USD of a nano-USD integer (daily totals stay far below 2^53 nano, exact as JS numbers).
  function usd(nano) {
    var sign = nano < 0 ? "-" : "";
    var digits = String(Math.abs(nano)).padStart(10, "0");
    var fraction = digits.slice(-9).replace(/0+$/, "");
    if (fraction.length < 2) fraction = (fraction + "00").slice(0, 2);
    return sign + "$" + digits.slice(0, -9) + "." + fraction;
  }
  // An axis tick (USD as a JS number) as $0.000014 rather than 1.4E-5.
  function tick(value) {
    return usd(Math.round(value * 1e9));
  }
  return { usd: usd, tick: tick };
})();
