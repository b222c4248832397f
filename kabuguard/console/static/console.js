// Kabuguard console: the live alert queue, the campaign graph and chart, the dashboard chart.
// No inline scripts (the pages' Content-Security-Policy forbids them): each part starts from
// an element it finds on the page.
"use strict";

function fmtTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toISOString().replace("T", " ").slice(0, 16);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// The alert queue polls for alerts recorded since the newest one shown, in the order recorded;
// while the server says more are waiting (a burst, a laptop back from sleep) it asks again at once.
function liveQueue(table) {
  const body = table.tBodies[0];
  let last = Number(table.dataset.lastSeq || 0);
  const params = new URLSearchParams(table.dataset.query || "");
  async function poll() {
    params.set("after", String(last));
    let more = false;
    try {
      const answer = await fetch("/console/api/alerts?" + params, {credentials: "same-origin"});
      if (!answer.ok) throw new Error(String(answer.status));
      const page = await answer.json();
      for (const a of page.alerts) {
        const row = document.createElement("tr");
        row.dataset.seq = a.seq;
        row.className = a.type + " fresh";
        cell(row, a.ts); cell(row, a.type); cell(row, a.firm); cell(row, (a.score || 0).toFixed(3));
        const link = document.createElement("a");
        link.href = `/console/alerts/${encodeURIComponent(a.firm)}/${encodeURIComponent(a.alert_id)}`;
        link.textContent = a.subject;
        cell(row, "").appendChild(link);
        cell(row, (a.reasons || []).join(", "));
        cell(row, a.status).className = "status";
        body.insertBefore(row, body.firstChild);
        last = Math.max(last, a.seq);
      }
      more = page.more;
      document.getElementById("live").textContent = "live";
    } catch (err) {
      document.getElementById("live").textContent = "reconnecting";
    }
    setTimeout(poll, more ? 0 : 2000);
  }
  setTimeout(poll, 2000);
}

const COLOURS = {account: "#1f5fbf", ip: "#c0392b", device: "#7d3c98", symbol: "#1e8449"};

async function campaign(graph) {
  const data = await (await fetch(graph.dataset.src, {credentials: "same-origin"})).json();
  const cy = cytoscape({
    container: graph,
    elements: data.elements,
    style: [
      {selector: "node", style: {"label": "data(label)", "font-size": 9, "width": 16, "height": 16,
                                 "background-color": (n) => COLOURS[n.data("kind")] || "#777",
                                 "text-valign": "bottom", "text-margin-y": 3}},
      {selector: "node[kind = 'symbol']", style: {"shape": "round-rectangle", "width": 26, "height": 18}},
      {selector: "node[kind = 'ip']", style: {"shape": "diamond"}},
      {selector: "node[kind = 'device']", style: {"shape": "triangle"}},
      {selector: "edge", style: {"width": 1.2, "line-color": "#aab", "curve-style": "haystack"}},
    ],
    layout: {name: "cose", animate: false, randomize: false, nodeRepulsion: () => 9000, idealEdgeLength: () => 60},
  });
  graph.dataset.nodes = String(cy.nodes().length);
  graph.dataset.ready = "true";
  const market = document.getElementById("campaign-market");
  for (const [symbol, bars] of Object.entries(data.bars)) {
    const box = document.createElement("div");
    box.className = "chart";
    market.appendChild(box);
    if (!bars.t || !bars.t.length) { box.textContent = `${symbol}: no market bars recorded around the attack`; continue; }
    new uPlot({
      title: `${symbol}: close and volume (attack at ${fmtTime(data.alert_ts)} UTC)`, width: Math.min(900, market.clientWidth || 900), height: 260,
      scales: {x: {time: true}, vol: {}},
      series: [{}, {label: "close", stroke: "#1f5fbf", width: 1.5},
               {label: "volume", scale: "vol", stroke: "#1e8449", fill: "#1e844922", paths: uPlot.paths.bars({size: [0.8, 4]})}],
      axes: [{}, {label: "price"}, {side: 1, scale: "vol", label: "volume", grid: {show: false}}],
      hooks: {draw: [(u) => {  // the alert's time as a red line
        const x = u.valToPos(data.alert_ts, "x", true);
        const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#c0392b"; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
      }]},
    }, [bars.t, bars.close, bars.volume], box);
  }
  market.dataset.ready = "true";
}

async function dashboard(box) {
  const data = await (await fetch("/console/api/dashboard", {credentials: "same-origin"})).json();
  const colours = {allow: "#2e86c1", challenge: "#f1c40f", review: "#e67e22", block: "#c0392b"};
  const names = Object.keys(data.decisions);
  new uPlot({
    width: Math.min(1000, box.clientWidth || 1000), height: 280, scales: {x: {time: true}},
    series: [{}, ...names.map((d) => ({label: d, stroke: colours[d], width: 1.5}))],
    axes: [{}, {label: "decisions per hour"}],
  }, [data.hours, ...names.map((d) => data.decisions[d])], box);
  box.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  const queue = document.getElementById("alert-queue");
  if (queue) liveQueue(queue);
  const graph = document.getElementById("campaign-graph");
  if (graph) campaign(graph);
  const chart = document.getElementById("decisions-chart");
  if (chart) dashboard(chart);
});
