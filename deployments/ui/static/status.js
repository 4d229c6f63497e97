"use strict";
// The operator's view of GET /status, read again every few seconds.
const REFRESH_S = 5;
const $ = (id) => document.getElementById(id);

function table(caption, headers, rows) {
  const body = rows.length ? rows.map((row) => element("tr", {}, ...row.map((cell) => element("td", {}, cell ?? ""))))
                           : [element("tr", {}, element("td", { colspan: String(headers.length) }, "none"))];
  return element("section", {}, element("h2", {}, caption),
                 element("div", { class: "scroll" },
                         element("table", {}, element("thead", {}, element("tr", {}, ...headers.map((h) =>
                           element("th", { scope: "col" }, h)))), element("tbody", {}, ...body))));
}

function show(report) {
  const deployments = Object.entries(report.deployments);
  const replicas = deployments.flatMap(([name, d]) => (d.running || []).map((r) => [
    name, r.replica, r.device, Object.entries(r.engines).map(([m, e]) => `${m} (${e})`).join(", ") || "none",
    r.batching ? Object.entries(r.batching).map(([k, v]) => `${k}=${v}`).join(", ") : "", r.node]));
  const models = Object.entries(report.models);
  $("report").replaceChildren(
    table("Selection", ["slot", "value"], Object.entries(report.selection).map(([k, v]) => [k, v || "(not selected)"])),
    table("Deployments", ["deployment", "status", "replicas"], deployments.map(([name, d]) =>
      [name, d.status, Object.entries(d.replicas).map(([state, n]) => `${state}: ${n}`).join(", ")])),
    table("Replicas", ["deployment", "replica", "device", "loaded models", "batching", "node"], replicas),
    table("Downloads", ["model", "state", "progress", "error"], Object.entries(report.downloads || {}).map(
      ([id, d]) => [id, d.state, `${d.percent}% of ${d.total_bytes ?? "?"} bytes`, d.error || ""])),
    table("Unavailable models", ["model", "kind", "why"], models.filter(([, m]) => !m.usable).map(
      ([id, m]) => [id, m.kind, m.reason])),
    table("Usable models", ["model", "kind", "backend"], models.filter(([, m]) => m.usable).map(
      ([id, m]) => [id, m.kind, m.backend])),
    table("Plugins", ["family", "enabled", "version", "warning"], Object.entries(report.plugins).map(
      ([name, p]) => [name, p.installed ? "yes" : "no", p.version || "", p.warning || ""])),
    table("Reader profiles", ["", "count"], [
      ["reader profiles", report.profiles.profiles], ["used in the last day", report.profiles.used_last_day],
      ...Object.entries(report.profiles.requests).map(([kind, n]) => [`requests by ${kind} paths (this replica)`, n])]));
}

async function refresh() {
  try {
    show(await api("GET", "/status", undefined, (s) => {
      $("state").textContent = `The server is busy: retrying in ${s} s.`;
    }));
    $("state").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_S} s.`;
    $("state").className = "";
  } catch (error) {
    $("state").textContent = error.status === 401
      ? `${error.message} Enter it under "API token".` : `Error [${error.status ?? "network"}]: ${error.message}`;
    $("state").className = "error";
    if (error.status === 401) $("token-box").open = true;
  }
  setTimeout(refresh, REFRESH_S * 1000);
}

$("token").value = apiToken();
$("save-token").addEventListener("click", () => { setApiToken($("token").value.trim()); });
refresh();
