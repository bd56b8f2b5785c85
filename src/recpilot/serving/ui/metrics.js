// The metrics page: the model's offline numbers and live request statistics.
"use strict";

(() => {
  const { api, el, clear, formatTime, formatNumber, setStatus } = RecPilot;
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 3000;

  // Nested metrics.json → [["metrics.NDCG@10", 0.05], ...] (numbers, strings, booleans).
  function flatten(value, prefix, rows) {
    if (value === null || value === undefined) return rows;
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, rows);
    } else if (Array.isArray(value)) {
      if (value.length <= 8 && value.every((v) => typeof v !== "object")) rows.push([prefix, value.join(", ")]);
    } else {
      rows.push([prefix, value]);
    }
    return rows;
  }

  function fillPairs(table, rows) {
    clear(table);
    const body = el("tbody");
    for (const [name, value] of rows) {
      body.append(el("tr", {},
        el("th", { scope: "row" }, name),
        el("td", { class: typeof value === "number" ? "num" : "" },
          typeof value === "number" ? formatNumber(value) : String(value))));
    }
    table.append(body);
  }

  function render(stats) {
    const model = stats.model;
    $("model-version").textContent = model.version;
    fillPairs($("model"), [
      ["version", model.version], ["model", model.name], ["items", model.n_items],
      ["training users", model.n_users ?? "–"], ["created", model.created ?? "–"],
      ["trained with recpilot", model.trained_with ?? "–"],
      ["loaded", formatTime(model.loaded_at * 1000)],
    ]);
    const offline = flatten(stats.offline_metrics, "", []);
    if (offline.length) fillPairs($("offline"), offline);
    else fillPairs($("offline"), [["metrics.json", "none in the served artefact"]]);
    fillPairs($("service"), Object.entries(stats.service));

    const body = $("requests").querySelector("tbody");
    clear(body);
    for (const row of stats.requests) {
      body.append(el("tr", { "data-testid": "route-row" },
        el("td", {}, row.method), el("td", {}, el("code", {}, row.route)),
        el("td", { class: "num" }, formatNumber(row.count)),
        el("td", { class: "num" }, formatNumber(row.client_errors)),
        el("td", { class: "num" }, formatNumber(row.server_errors)),
        el("td", { class: "num" }, row.p50_ms.toFixed(2)),
        el("td", { class: "num" }, row.p95_ms.toFixed(2)),
        el("td", { class: "num" }, row.p99_ms.toFixed(2)),
        el("td", { class: "num" }, row.per_second.toFixed(2))));
    }
    const up = Math.round(Date.now() / 1000 - stats.started_at);
    setStatus($("status"), `up ${up} s · refreshed ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`);
  }

  async function tick() {
    try {
      render(await api("/ui/api/stats"));
    } catch (err) {
      setStatus($("status"), `cannot read statistics: ${err.message}`, true);
    }
  }

  tick();
  window.setInterval(tick, REFRESH_MS);
})();
