// sanpath console: the daemon's event stream drives the page's htmx parts (no reloads), and the SR
// view's chart plots each path's throughput as the data path samples it.
"use strict";

// show error answers (XenServer's error name, message and advice) where the answer was meant to go
htmx.config.responseHandling = [{code: "204", swap: false}, {code: "...", swap: true}];

function sanpathEvents() {
  const live = document.getElementById("live");
  const source = new EventSource(document.body.dataset.events);
  const mark = (on, text) => {
    if (!live) return;
    live.className = "live " + (on ? "on" : "off");
    live.textContent = text;
  };
  source.onopen = () => mark(true, "live");
  source.onerror = () => mark(false, "reconnecting");
  source.addEventListener("state", (e) => htmx.trigger(document.body, "sp-state", JSON.parse(e.data)));
  source.addEventListener("message", (e) => htmx.trigger(document.body, "sp-message", JSON.parse(e.data)));
}

const CHART_POINTS = 120;  // two minutes at one sample a second
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

function sanpathChart(el) {
  // window.sanpathChart keeps the samples, so that a test (or a person in the devtools) can read them
  const state = {names: [], time: [], mbps: {}, states: {}};
  window.sanpathChart = state;
  let plot = null;
  const build = () => {
    if (plot) plot.destroy();
    const series = [{label: "time"}].concat(state.names.map((n, i) => (
      {label: n, stroke: COLOURS[i % COLOURS.length], width: 2, value: (u, v) => v == null ? "-" : v.toFixed(1)})));
    plot = new uPlot({width: Math.max(el.clientWidth, 400), height: 240, series: series,
                      scales: {y: {range: (u, min, max) => [0, Math.max(max, 1)]}},
                      axes: [{}, {label: "MB/s"}]}, data(), el);
  };
  const data = () => [state.time].concat(state.names.map((n) => state.mbps[n]));
  const poll = async () => {
    try {
      const r = await fetch(el.dataset.url, {headers: {"Accept": "application/json"}});
      if (r.ok) {
        const answer = await r.json();
        const names = answer.paths.map((p) => p.name);
        if (names.join() !== state.names.join()) {
          state.names = names;
          for (const n of names) state.mbps[n] = state.mbps[n] || state.time.map(() => null);
          build();
        }
        state.time.push(Date.now() / 1000);
        for (const p of answer.paths) {
          state.mbps[p.name].push(p.mbps);
          state.states[p.name] = p.state;
        }
        if (state.time.length > CHART_POINTS) {
          state.time.shift();
          for (const n of state.names) state.mbps[n].shift();
        }
        if (plot) plot.setData(data());
      }
    } catch (e) { /* the daemon is away: try again at the next tick */ }
    setTimeout(poll, 1000);
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.events) sanpathEvents();
  const chart = document.getElementById("chart");
  if (chart) sanpathChart(chart);
});
