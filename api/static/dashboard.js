// ranktune dashboard: live refresh, charts (uPlot), confirmations, the create form's helpers.
// Every page works without this script (forms post, pages render on the server); it adds
// the live updates, the charts and the form conveniences. No inline script: the pages'
// Content-Security-Policy allows only files from this server.
(function () {
  "use strict";

  var main = document.getElementById("main");
  var csrf = (document.querySelector('input[name="csrf_token"]') || {}).value || "";
  var status = document.getElementById("live-status");

  // -- times: "12:03:04 (2 min ago)" in the viewer's time zone --------------------------
  function ago(seconds) {
    if (seconds < 60) return Math.max(0, Math.round(seconds)) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }
  function localiseTimes(root) {
    var now = Date.now();
    root.querySelectorAll("time[data-relative]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      el.title = el.getAttribute("datetime");
      var today = new Date(now).toDateString() === at.toDateString();
      var shown = today
        ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
        : at.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      el.textContent = shown + " (" + ago((now - at.getTime()) / 1000) + ")";
    });
  }
  localiseTimes(document);

  // -- confirmations for irreversible actions -----------------------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // A picker that shows what it picks at once (the form's button does it without script).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // -- live: poll a cheap version; when it moves, swap the live sections -----------------------
  var liveUrl = main && main.getAttribute("data-live-url");
  var charts = null;
  if (liveUrl) {
    var pageUrl = main.getAttribute("data-page-url") || window.location.pathname;
    var pollMs = parseInt(main.getAttribute("data-poll-ms"), 10) || 2500;
    var busy = false;
    var poll = function () {
      if (busy || document.visibilityState === "hidden") return;
      busy = true;
      fetch(liveUrl, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) {
          if (!answer || String(answer.version) === main.getAttribute("data-live-version")) return null;
          return refresh(String(answer.version));
        })
        .catch(function () { /* offline for a moment: the next poll retries */ })
        .then(function () { busy = false; });
    };
    var refresh = function (version) {
      return fetch(pageUrl, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          var focused = document.activeElement && document.activeElement.id;
          document.querySelectorAll("[data-live][id]").forEach(function (old) {
            var replacement = fresh.getElementById(old.id);
            if (replacement) old.replaceWith(document.importNode(replacement, true));
          });
          if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
          localiseTimes(document);
          paintSwatches();
          main.setAttribute("data-live-version", version);
          var ticks = document.getElementById("tick-count");
          if (status) status.textContent = "Updated" + (ticks ? " after tick " + ticks.textContent : "") + ".";
          if (charts) charts.reload();
        });
    };
    window.setInterval(poll, pollMs);
    document.addEventListener("visibilitychange", poll);
  }

  // -- charts -------------------------------------------------------------------------------------
  var PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"];
  var GREY = "#b1b8c0";
  var MARKER_COLOURS = { genetic: "#6f42c1", paused: "#9a6700", resumed: "#1a7f37", stopped: "#57606a",
    created: "#57606a", guardrail: "#cf222e", breaker: "#a40e26", winner: "#116329", phase: "#0969da" };

  function colourOf(index, highlighted) { return index < highlighted ? PALETTE[index % PALETTE.length] : GREY; }

  function paintSwatches() {
    if (!charts || !charts.colours) return;
    document.querySelectorAll(".swatch[data-arm]").forEach(function (el) {
      var colour = charts.colours[el.getAttribute("data-arm")];
      if (colour) el.style.background = colour;
    });
  }

  function percent(digits) {
    return function (u, v) { return v == null ? "—" : (v * 100).toFixed(digits) + "%"; };
  }
  function signedPercent(u, v) { return v == null ? "—" : (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + "%"; }
  function count(u, v) { return v == null ? "—" : Math.round(v).toLocaleString(); }

  function markerPlugin(markers) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          ctx.save();
          markers.forEach(function (m) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.strokeStyle = MARKER_COLOURS[m.kind] || "#57606a";
            ctx.lineWidth = 1 * devicePixelRatio;
            ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          ctx.restore();
        },
      },
    };
  }

  function bandPlugin(bands) {
    // Filled 95% bands under the lines of the highlighted arms.
    return {
      hooks: {
        drawAxes: function (u) {
          var ctx = u.ctx;
          var xs = u.data[0];
          ctx.save();
          bands.forEach(function (band) {
            ctx.fillStyle = band.colour + "22";
            var i = 0;
            while (i < xs.length) {
              while (i < xs.length && (band.lo[i] == null || band.hi[i] == null)) i++;
              var start = i;
              while (i < xs.length && band.lo[i] != null && band.hi[i] != null) i++;
              if (i - start < 2) continue;
              ctx.beginPath();
              for (var j = start; j < i; j++) {
                var px = u.valToPos(xs[j], "x", true), py = u.valToPos(band.hi[j], "y", true);
                if (j === start) ctx.moveTo(px, py); else ctx.lineTo(px, py);
              }
              for (var k = i - 1; k >= start; k--) ctx.lineTo(u.valToPos(xs[k], "x", true), u.valToPos(band.lo[k], "y", true));
              ctx.closePath();
              ctx.fill();
            }
          });
          ctx.restore();
        },
      },
    };
  }

  function Charts(url) {
    this.url = url;
    this.plots = [];
    this.range = "all";
    this.colours = {};
    this.reload();
  }
  Charts.prototype.reload = function () {
    var self = this;
    return fetch(this.url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) self.draw(data); })
      .catch(function (error) {
        // Say so where the charts would be (the next tick's refresh tries again).
        document.querySelectorAll(".chart-area").forEach(function (el) {
          el.textContent = "The charts could not be drawn: " + error;
        });
      });
  };
  Charts.prototype.width = function (el) { return Math.max(280, el.clientWidth || 600); };
  Charts.prototype.draw = function (data) {
    var self = this;
    this.plots.forEach(function (p) { p.destroy(); });
    this.plots = [];
    this.data = data;
    var arms = data.arms;
    var highlighted = data.highlighted;
    var sync = uPlot.sync("ranktune-" + data.experiment);
    var colours = {};
    arms.forEach(function (arm, i) { colours[arm.id] = arm.status === "active" ? colourOf(i, highlighted) : GREY; });
    this.colours = colours;
    paintSwatches();
    var markers = data.markers;

    function armSeries(arm, i, value) {
      var active = arm.status === "active";
      var bright = active && i < highlighted;
      return {
        label: "arm " + arm.id + " (" + arm.origin + (active ? "" : ", retired") + ")",
        stroke: colours[arm.id],
        width: bright ? 2 : 1,
        dash: active ? undefined : [5, 4],
        retired: !active,
        spanGaps: false,
        points: { show: false },
        value: value,
      };
    }
    function base(el, label, extra) {
      var height = window.innerWidth < 640 ? 220 : 260;
      var options = {
        width: self.width(el),
        height: height,
        title: "",
        cursor: { sync: { key: sync.key }, focus: { prox: 16 }, drag: { x: true, y: false } },
        focus: { alpha: 0.25 },
        legend: { live: true },
        scales: { x: { time: true } },
        axes: [{ stroke: "#57606a", grid: { stroke: "#eaeef2" } },
               { stroke: "#57606a", grid: { stroke: "#eaeef2" }, size: 70 }],
        plugins: [markerPlugin(markers)],
        hooks: { setSelect: [function (u) { self.range = null; self.pressZoom(null); }] },
      };
      for (var key in extra) options[key] = extra[key];
      return options;
    }
    function make(id, series, values, label, extra, plugins) {
      var el = document.getElementById(id);
      if (!el) return;
      el.textContent = "";
      if (!values[0].length) {
        var p = document.createElement("p");
        p.className = "chart-empty";
        p.textContent = "No applied tick yet: the chart fills in after the first tick with reference traffic.";
        el.appendChild(p);
        return;
      }
      var options = base(el, label, extra);
      options.series = series;
      if (plugins) options.plugins = options.plugins.concat(plugins);
      var plot = new uPlot(options, values, el);
      // Retired arms keep their (dashed, grey) lines but leave the legend to the living.
      var rows = el.querySelectorAll(".u-legend .u-series");
      series.forEach(function (s, i) { if (s.retired && rows[i]) rows[i].classList.add("legend-retired"); });
      el.setAttribute("role", "img");
      el.setAttribute("aria-label", (el.parentNode.querySelector("figcaption") || {}).textContent || id);
      self.plots.push(plot);
    }

    var xs = data.t;
    make("chart-share",
      [{ label: "time" }].concat(arms.map(function (arm, i) { return armSeries(arm, i, percent(1)); })),
      [xs].concat(arms.map(function (arm) { return arm.share; })),
      "share", { scales: { x: { time: true }, y: { range: [0, 1] } },
                 axes: [{ stroke: "#57606a", grid: { stroke: "#eaeef2" } },
                        { stroke: "#57606a", grid: { stroke: "#eaeef2" }, size: 60, values: function (u, vals) { return vals.map(function (v) { return Math.round(v * 100) + "%"; }); } }] });

    var bands = arms.filter(function (arm, i) { return arm.status === "active" && i < highlighted; })
      .map(function (arm) { return { colour: colours[arm.id], lo: arm.lo, hi: arm.hi }; });
    make("chart-lift",
      [{ label: "time" }].concat(arms.map(function (arm, i) { return armSeries(arm, i, signedPercent); })),
      [xs].concat(arms.map(function (arm) { return arm.lift; })),
      "lift", { axes: [{ stroke: "#57606a", grid: { stroke: "#eaeef2" } },
                       { stroke: "#57606a", grid: { stroke: "#eaeef2" }, size: 60, values: function (u, vals) { return vals.map(function (v) { return (v >= 0 ? "+" : "") + Math.round(v * 100) + "%"; }); } }] },
      [bandPlugin(bands)]);

    make("chart-gain",
      [{ label: "time" },
       { label: "bandit group", stroke: "#0072B2", width: 2, value: count, points: { show: false } },
       { label: "at the reference rate", stroke: "#57606a", width: 2, dash: [6, 4], value: count, points: { show: false } }],
      [data.gain.t, data.gain.actual, data.gain.expected], "events", {});

    var list = document.getElementById("marker-list");
    if (list) {
      list.textContent = "";
      markers.slice().reverse().forEach(function (m) {
        var li = document.createElement("li");
        li.textContent = new Date(m.t * 1000).toLocaleString() + " — " + m.label;
        list.appendChild(li);
      });
      if (!markers.length) list.textContent = "None yet.";
    }
    this.applyRange();
  };
  Charts.prototype.latest = function () {
    var d = this.data;
    var t = d.t.length ? d.t[d.t.length - 1] : 0;
    var g = d.gain.t.length ? d.gain.t[d.gain.t.length - 1] : 0;
    return Math.max(t, g);
  };
  Charts.prototype.earliest = function () {
    var d = this.data;
    var candidates = [d.t[0], d.gain.t[0]].filter(function (v) { return v != null; });
    return candidates.length ? Math.min.apply(null, candidates) : 0;
  };
  Charts.prototype.applyRange = function () {
    if (this.range == null || !this.data) return;
    var max = this.latest();
    var min = this.range === "all" ? this.earliest() : Math.max(this.earliest(), max - this.range);
    if (!(max > min)) return;
    this.plots.forEach(function (p) { p.setScale("x", { min: min, max: max }); });
  };
  Charts.prototype.zoom = function (range) {
    this.range = range === "all" ? "all" : parseInt(range, 10);
    this.pressZoom(range);
    this.applyRange();
  };
  Charts.prototype.pressZoom = function (range) {
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-zoom") === String(range)));
    });
  };
  Charts.prototype.resize = function () {
    this.plots.forEach(function (p) {
      var el = p.root.parentNode;
      p.setSize({ width: Math.max(280, el.clientWidth), height: p.height });
    });
  };

  var chartsUrl = main && main.getAttribute("data-charts-url");
  if (chartsUrl && window.uPlot) {
    charts = new Charts(chartsUrl);
    document.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () { charts.zoom(button.getAttribute("data-zoom")); });
    });
    var resizing = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(resizing);
      resizing = window.setTimeout(function () { charts.resize(); }, 150);
    });
  }

  // -- the create form: rows without a round trip, and the JSON as you type -----------------------
  var createForm = document.getElementById("create-form");
  if (createForm) {
    var preview = document.getElementById("json-preview");
    var timer = null;
    var updatePreview = function () {
      var body = new URLSearchParams(new FormData(createForm));
      fetch("/experiments/new/preview", {
        method: "POST", credentials: "same-origin", body: body,
        headers: { "X-CSRF-Token": csrf },
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (json) { if (json && preview) preview.textContent = JSON.stringify(json, null, 2); })
        .catch(function () {});
    };
    createForm.addEventListener("input", function (event) {
      var name = event.target.getAttribute("data-parameter-name");
      if (name !== null) {
        var heading = document.querySelector('[data-parameter-heading="' + name + '"]');
        var label = event.target.value || "parameter " + (parseInt(name, 10) + 1);
        if (heading) heading.textContent = label;
        document.querySelectorAll("#config-table tbody label").forEach(function (cell) {
          var at = /^cell-(\d+)-(\d+)$/.exec(cell.htmlFor);
          if (at && at[2] === String(name)) cell.textContent = (at[1] === "0" ? "Reference" : "Arm " + at[1]) + ", " + label;
        });
      }
      window.clearTimeout(timer);
      timer = window.setTimeout(updatePreview, 250);
    });
    createForm.addEventListener("change", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(updatePreview, 100);
    });

    var addParameter = function () {
      var body = document.querySelector("#parameter-table tbody");
      var rows = body.querySelectorAll("tr[data-parameter-row]");
      var last = rows[rows.length - 1];
      var index = rows.length;
      var row = last.cloneNode(true);
      row.setAttribute("data-parameter-row", index);
      row.querySelector("th").textContent = String(index + 1);
      row.querySelectorAll(".field-error").forEach(function (e) { e.remove(); });
      row.querySelectorAll("input").forEach(function (input) {
        input.value = "";
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
        if (input.hasAttribute("data-parameter-name")) input.setAttribute("data-parameter-name", index);
      });
      row.querySelectorAll("label").forEach(function (label) {
        label.textContent = label.textContent.replace("Parameter " + index + " ", "Parameter " + (index + 1) + " ");
      });
      row.querySelectorAll("input, select, label").forEach(function (el) {
        ["name", "id", "for"].forEach(function (attr) {
          var value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.replace("parameters[" + (index - 1) + "]", "parameters[" + index + "]").replace("parameters-" + (index - 1) + "-", "parameters-" + index + "-"));
        });
      });
      body.appendChild(row);
      // A new column in the configurations grid.
      var headRow = document.querySelector("#config-table thead tr");
      var th = document.createElement("th");
      th.scope = "col";
      th.setAttribute("data-parameter-heading", index);
      th.textContent = "parameter " + (index + 1);
      headRow.appendChild(th);
      document.querySelectorAll("#config-table tbody tr[data-config-row]").forEach(function (tr) {
        var r = tr.getAttribute("data-config-row");
        tr.appendChild(configCell(r, index));
      });
      row.querySelector("input").focus();
    };
    var configCell = function (r, i) {
      var td = document.createElement("td");
      var label = document.createElement("label");
      label.className = "sr-only";
      label.htmlFor = "cell-" + r + "-" + i;
      var heading = document.querySelector('[data-parameter-heading="' + i + '"]');
      label.textContent = (r === "0" ? "Reference" : "Arm " + r) + ", " + (heading ? heading.textContent : "parameter " + (i + 1));
      var input = document.createElement("input");
      input.id = "cell-" + r + "-" + i;
      input.name = "configs[" + r + "][" + i + "]";
      input.setAttribute("inputmode", "decimal");
      td.appendChild(label);
      td.appendChild(input);
      return td;
    };
    var addConfig = function () {
      var body = document.querySelector("#config-table tbody");
      var rows = body.querySelectorAll("tr[data-config-row]");
      var r = String(rows.length);
      var columns = document.querySelectorAll("#parameter-table tbody tr[data-parameter-row]").length;
      var tr = document.createElement("tr");
      tr.setAttribute("data-config-row", r);
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = "Arm " + r;
      tr.appendChild(th);
      for (var i = 0; i < columns; i++) tr.appendChild(configCell(r, i));
      body.appendChild(tr);
      tr.querySelector("input").focus();
    };
    createForm.querySelectorAll("[data-add-row]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        if (button.getAttribute("data-add-row") === "parameter") addParameter(); else addConfig();
      });
    });
  }
})();
