/* The admin monitoring dashboard: draws the figures as inline SVG and tables, and polls for new ones.
   No library: the figures are small and the charts are bars. Text goes in with textContent only, so
   a number or organization name can never become markup. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = { in: "#0b7a5c", out: "#3b82f6", latency: "#b45309" };
  var root = document.getElementById("monitoring");
  if (!root) return;

  function svgElement(name, attributes) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  function clear(element) { while (element.firstChild) element.removeChild(element.firstChild); }

  function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : ""; }

  function percent(rate) { return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + " %"; }

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (value) {
      var td = document.createElement("td");
      td.textContent = value === null || value === undefined ? "" : String(value);
      tr.appendChild(td);
    });
    return tr;
  }

  function fillTable(id, rows, emptyText, columns) {
    var table = document.getElementById(id);
    if (!table) return;
    var body = table.tBodies[0];
    clear(body);
    if (!rows.length) {
      var tr = row([emptyText]);
      tr.firstChild.colSpan = columns;
      tr.className = "empty";
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) { body.appendChild(row(cells)); });
  }

  function drawThroughput(buckets) {
    var chart = document.getElementById("throughput-chart");
    clear(chart);
    var width = 600, height = 160, bottom = 18;
    var highest = 1, total = 0;
    buckets.forEach(function (bucket) {
      highest = Math.max(highest, bucket.in + bucket.out);
      total += bucket.in + bucket.out;
    });
    var slot = width / buckets.length, bar = Math.max(1, slot - 2), scale = (height - bottom - 4) / highest;
    chart.appendChild(svgElement("line", { x1: 0, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#999" }));
    buckets.forEach(function (bucket, index) {
      var x = index * slot + 1, inHeight = bucket.in * scale, outHeight = bucket.out * scale;
      var received = svgElement("rect", { x: x, width: bar, y: height - bottom - inHeight, height: inHeight, fill: COLORS.in, "data-in": bucket.in });
      var sent = svgElement("rect", { x: x, width: bar, y: height - bottom - inHeight - outHeight, height: outHeight, fill: COLORS.out, "data-out": bucket.out });
      var title = svgElement("title");
      title.textContent = bucket.minute.slice(11, 16) + " UTC: " + bucket.in + " received, " + bucket.out + " sent";
      received.appendChild(title);
      chart.appendChild(received);
      chart.appendChild(sent);
    });
    [0, buckets.length - 1].forEach(function (index) {
      var label = svgElement("text", { x: index ? width - 2 : 2, y: height - 4, "font-size": 11, "text-anchor": index ? "end" : "start", fill: "#666" });
      label.textContent = buckets[index].minute.slice(11, 16);
      chart.appendChild(label);
    });
    var peak = svgElement("text", { x: 2, y: 11, "font-size": 11, fill: "#666" });
    peak.textContent = "peak " + highest + "/min";
    chart.appendChild(peak);
    chart.setAttribute("data-total", total);
    document.getElementById("throughput-total").textContent = total;
  }

  function drawLatency(latencies) {
    var chart = document.getElementById("latency-chart");
    clear(chart);
    var providers = Object.keys(latencies);
    if (!providers.length) {
      var none = svgElement("text", { x: 4, y: 20, "font-size": 12, fill: "#666" });
      none.textContent = "No health checks in the last hour.";
      chart.appendChild(none);
      return;
    }
    var highest = Math.max.apply(null, providers.map(function (name) { return latencies[name]; }).concat([1]));
    var rowHeight = 120 / Math.max(providers.length, 4);
    providers.forEach(function (name, index) {
      var y = index * rowHeight, barWidth = 170 * latencies[name] / highest;
      var label = svgElement("text", { x: 0, y: y + rowHeight * 0.65, "font-size": 11, fill: "#333" });
      label.textContent = name;
      chart.appendChild(label);
      chart.appendChild(svgElement("rect", { x: 80, y: y + 2, width: Math.max(barWidth, 1), height: rowHeight - 4, fill: COLORS.latency }));
      var value = svgElement("text", { x: 84 + barWidth, y: y + rowHeight * 0.65, "font-size": 11, fill: "#333" });
      value.textContent = latencies[name] + " ms";
      chart.appendChild(value);
    });
  }

  function render(figures) {
    document.getElementById("monitoring-updated").textContent = when(figures.generated_at);
    drawThroughput(figures.throughput);
    drawLatency(figures.latency_by_provider);
    var providers = Object.keys(figures.active_numbers_by_provider);
    fillTable("active-numbers", providers.map(function (name) { return [name, figures.active_numbers_by_provider[name]]; }), "No connected numbers.", 2);
    var sends = figures.error_rates.sends, checks = figures.error_rates.health_checks;
    document.getElementById("send-error-rate").textContent = percent(sends.rate);
    document.getElementById("send-error-detail").textContent = "(" + sends.failed + " of " + sends.finished + ")";
    document.getElementById("check-error-rate").textContent = percent(checks.rate);
    document.getElementById("check-error-detail").textContent = "(" + checks.failed + " of " + checks.total + ")";
    var queue = document.getElementById("queue-depth");
    if (queue && figures.queue_depth) {
      queue.textContent = Object.keys(figures.queue_depth).reduce(function (sum, name) { return sum + figures.queue_depth[name]; }, 0);
    }
    fillTable("top-organizations", figures.top_organizations.map(function (org) { return [org.name, org.messages]; }), "No messages in the last 24 hours.", 2);
    fillTable("silent-numbers", figures.silent_numbers.map(function (number) {
      return [number.name + (number.phone ? " (" + number.phone + ")" : ""), number.organization, number.provider,
        number.status === "flagged" ? "flagged: still silent after a restart" : "restarted", when(number.since)];
    }), "No silent numbers.", 5);
    var unhealthy = figures.unhealthy_numbers.map(function (number) {
      return [number.name + (number.phone ? " (" + number.phone + ")" : ""), number.organization, number.provider, number.error];
    }).concat((figures.unhealthy_servers || []).map(function (server) {
      return ["server " + server.name, "(shared)", server.provider, server.error];
    }));
    fillTable("unhealthy", unhealthy, "Everything answered its last check.", 4);
  }

  function poll() {
    fetch(root.getAttribute("data-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error("HTTP " + response.status); return response.json(); })
      .then(render)
      .catch(function (error) { document.getElementById("monitoring-updated").textContent = "update failed (" + error.message + "), retrying"; })
      .then(function () { window.setTimeout(poll, 1000 * Number(root.getAttribute("data-refresh-seconds") || 3)); });
  }

  render(JSON.parse(document.getElementById("monitoring-figures").textContent));
  window.setTimeout(poll, 1000 * Number(root.getAttribute("data-refresh-seconds") || 3));
})();
