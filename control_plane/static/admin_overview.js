// The admin overview's chart: charged and provider cost per day as bars side by side (Chart.js,
// Debian's libjs-chart.js). Its figures are the exact nano-USD integers of the page's #margin-data
// JSON, also in the table below it.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("margin-data").textContent);
  var canvas = document.getElementById("margin-chart");
  var used = data.charged_nano.some(Boolean) || data.provider_cost_nano.some(Boolean);
  if (typeof Chart === "undefined" || !used) {
    canvas.parentNode.hidden = true;
    return;
  }
  var usd = tollgateMoney.usd;
  function dataset(label, nano, colour) {
    return {
      label: label,
      data: nano.map(function (value) { return value / 1e9; }),
      nano: nano,
      backgroundColor: colour,
    };
  }
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.days,
      datasets: [
        dataset("Charged", data.charged_nano, "#1f5fbf"),
        dataset("Provider cost", data.provider_cost_nano, "#e07b00"),
      ],
    },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { title: { display: true, text: "Day (" + data.time_zone + ")" } },
        y: { beginAtZero: true, title: { display: true, text: "USD" }, ticks: { callback: tollgateMoney.tick } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: function (item) {
              return item.dataset.label + ": " + usd(item.dataset.nano[item.dataIndex]);
            },
            footer: function (items) {
              var day = items[0].dataIndex;
              return "Margin: " + usd(data.charged_nano[day] - data.provider_cost_nano[day]);
            },
          },
        },
      },
    },
  });
})();
