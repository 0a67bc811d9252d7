// xarfd console: the only script of our own (the Content-Security-Policy
// allows scripts from /assets/ only, and nothing inline). Everything here
// is an enhancement: every page works without it.
(function () {
  "use strict";

  // Times: the server writes UTC in <time datetime>; show them in the
  // viewer's zone and keep UTC in the title (shown on hover).
  var fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  function localTimes(root) {
    var ts = (root || document).querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < ts.length; i++) {
      var d = new Date(ts[i].getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      ts[i].textContent = fmt.format(d);
      ts[i].setAttribute("data-local", "1");
    }
  }

  // Forms that destroy something ask first.
  function confirmForms(root) {
    var fs = (root || document).querySelectorAll("form[data-confirm]:not([data-confirm-bound])");
    for (var i = 0; i < fs.length; i++) {
      fs[i].setAttribute("data-confirm-bound", "1");
      fs[i].addEventListener("submit", function (ev) {
        if (!window.confirm(this.getAttribute("data-confirm"))) ev.preventDefault();
      });
    }
  }

  // Overview charts (uPlot): one chart per channel, series per hour.
  var series = [
    { key: "messages", label: "messages", stroke: "#1f77b4" },
    { key: "reports", label: "reports", stroke: "#2ca02c" },
    { key: "quarantined", label: "quarantined", stroke: "#d62728" },
    { key: "sent", label: "sent", stroke: "#9467bd" }
  ];
  var charts = [];
  function drawCharts(box, range) {
    if (!window.uPlot) return;
    var url = box.getAttribute("data-stats") + "?range=" + encodeURIComponent(range);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (st) {
        charts.forEach(function (c) { c.destroy(); });
        charts = [];
        box.textContent = "";
        if (!st.channels || st.channels.length === 0) {
          var p = document.createElement("p");
          p.className = "empty";
          p.setAttribute("data-testid", "charts-empty");
          p.textContent = "Nothing arrived in this period. Send a message to a channel's address and it shows here.";
          box.appendChild(p);
          return;
        }
        var width = Math.max(280, Math.min(box.clientWidth || document.documentElement.clientWidth - 32, 1200));
        st.channels.forEach(function (ch) {
          var fig = document.createElement("figure");
          fig.setAttribute("data-testid", "chart");
          fig.setAttribute("data-channel", ch.name);
          var cap = document.createElement("figcaption");
          cap.textContent = ch.name + " — per hour, " + (range === "30d" ? "last 30 days" : "last 24 hours") +
            ": " + series.map(function (s) { return sum(ch[s.key]) + " " + s.label; }).join(", ");
          fig.appendChild(cap);
          box.appendChild(fig);
          var data = [st.hours].concat(series.map(function (s) { return ch[s.key]; }));
          var opts = {
            width: width, height: 220,
            scales: { x: { time: true } },
            series: [{}].concat(series.map(function (s) {
              return { label: s.label, stroke: s.stroke, width: 1.5, points: { show: false } };
            })),
            axes: [{}, { size: 50 }]
          };
          charts.push(new window.uPlot(opts, data, fig));
        });
      })
      .catch(function () {
        box.textContent = "";
        var p = document.createElement("p");
        p.className = "error";
        p.textContent = "The chart data could not be loaded. Reload the page.";
        box.appendChild(p);
      });
  }
  function sum(a) {
    var n = 0;
    for (var i = 0; i < (a || []).length; i++) n += a[i];
    return n;
  }
  function charts0() {
    var box = document.getElementById("charts");
    if (!box) return;
    var buttons = document.querySelectorAll("button[data-range]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function () {
        for (var j = 0; j < buttons.length; j++) buttons[j].setAttribute("aria-pressed", "false");
        this.setAttribute("aria-pressed", "true");
        drawCharts(box, this.getAttribute("data-range"));
      });
    }
    drawCharts(box, "24h");
    // Follow the window's width (a phone turned, a window resized).
    var pending = 0;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var w = Math.max(280, Math.min(box.clientWidth, 1200));
        charts.forEach(function (c) { c.setSize({ width: w, height: 220 }); });
      }, 150);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    confirmForms(document);
    charts0();
  });
  // New content from htmx (live report rows).
  document.addEventListener("htmx:load", function (ev) {
    localTimes(ev.target);
    confirmForms(ev.target);
    // The first live row replaces the "no reports yet" note.
    if (ev.target.matches && ev.target.matches("tr[data-report-id]")) {
      var empty = document.querySelector("[data-testid=empty-reports]");
      if (empty) empty.remove();
    }
  });
})();
