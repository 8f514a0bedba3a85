// The dashboard's chart: daily spend by model as stacked bars (Chart.js, Debian's libjs-chart.js).
// Its figures are the exact nano-USD integers of the page's #spend-data JSON, also in the table below.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("spend-data").textContent);
  var canvas = document.getElementById("spend-chart");
  if (typeof Chart === "undefined" || !data.series.length) {
    canvas.parentNode.hidden = true;
    return;
  }
  var usd = tollgateMoney.usd;
  var palette = ["#1f5fbf", "#e07b00", "#1a7f37", "#b42318", "#7a3fb8", "#0f8a8a", "#9a6700", "#c2185b", "#5b6571"];
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.days,
      datasets: data.series.map(function (series, index) {
        return {
          label: series.model,
          data: series.cost_nano.map(function (nano) { return nano / 1e9; }),
          nano: series.cost_nano,
          backgroundColor: palette[index % palette.length],
        };
      }),
    },
    options: {
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { stacked: true, title: { display: true, text: "Day (" + data.time_zone + ")" } },
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "USD" },
             ticks: { callback: tollgateMoney.tick } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: function (item) {
              return item.dataset.label + ": " + usd(item.dataset.nano[item.dataIndex]);
            },
          },
        },
      },
    },
  });
})();
