// Charts of the operator console, drawn from JSON the server embeds in <script type="application/json"> blocks
// (no inline script: the Content-Security-Policy allows scripts from the hub's own files only). Amounts
// arrive in fen (integers) and are shown in yuan.
(function () {
  "use strict";

  function yuan(fen) {
    var sign = fen < 0 ? "-" : "";
    var abs = Math.abs(fen);
    var whole = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    var cents = String(abs % 100).padStart(2, "0");
    return sign + "¥" + whole + "." + cents;
  }

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function chart(id) {
    var node = document.getElementById(id);
    if (!node || typeof echarts === "undefined") { return null; }
    var c = echarts.init(node, null, { renderer: "svg", locale: "ZH" });
    window.addEventListener("resize", function () { c.resize(); });
    return c;
  }

  function drawStats() {
    var d = data("stats-data");
    if (!d) { return; }
    var bars = chart("chart-month-use");
    if (bars) {
      bars.setOption({
        aria: { enabled: true },
        tooltip: { trigger: "axis", valueFormatter: yuan },
        legend: { top: 0 },
        grid: { left: 90, right: 20, top: 40, bottom: 30 },
        xAxis: { type: "category", data: d.months },
        yAxis: { type: "value", axisLabel: { formatter: yuan } },
        series: d.series.map(function (s) { return { name: s.name, type: "bar", stack: "amount", data: s.data }; })
      });
    }
    var pie = chart("chart-scope");
    if (pie) {
      pie.setOption({
        aria: { enabled: true },
        tooltip: { trigger: "item", formatter: function (p) { return p.name + "：" + yuan(p.value) + "（" + p.percent + "%）"; } },
        legend: { bottom: 0 },
        series: [{ type: "pie", radius: ["35%", "65%"], data: d.scopes,
                   label: { formatter: function (p) { return p.name + " " + p.percent + "%"; } } }]
      });
    }
  }

  function drawMatrix() {
    var d = data("matrix-data");
    if (!d || !d.provinces.length) { return; }
    var heat = chart("chart-matrix");
    if (!heat) { return; }
    var values = d.heat.map(function (cell) { return cell[2]; });
    heat.setOption({
      aria: { enabled: true },
      tooltip: { formatter: function (p) { return d.labels[p.value[1]] + " → " + d.labels[p.value[0]] + "：" + yuan(p.value[2]); } },
      grid: { left: 110, right: 20, top: 10, bottom: 90 },
      xAxis: { type: "category", data: d.labels, axisLabel: { rotate: 30 } },
      yAxis: { type: "category", data: d.labels },
      visualMap: { min: 0, max: Math.max.apply(null, values.concat([1])), calculable: true, orient: "horizontal",
                   left: "center", bottom: 0, formatter: function (v) { return yuan(Math.round(v)); } },
      series: [{ type: "heatmap", data: d.heat, label: { show: true, formatter: function (p) { return yuan(p.value[2]); } } }]
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawStats();
    drawMatrix();
  });
}());
