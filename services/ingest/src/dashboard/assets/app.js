// Perry Hub dashboard: follow a build's log over the hub's WebSocket (the same `subscribe` the
// CLI sends: the hub replays the stored events, then sends new ones live), and refresh the
// list pages every few seconds. No framework, no build step.
(function () {
  "use strict";

  var pre = document.getElementById("log");
  if (pre) follow(pre);

  var refresh = document.querySelector("[data-refresh]");
  if (refresh && !pre) {
    setTimeout(function () { location.reload(); }, Number(refresh.dataset.refresh) * 1000);
  }

  function follow(pre) {
    var job = pre.dataset.job;
    var live = document.getElementById("live");
    var done = false;
    var tries = 0;
    // A build that had ended when the page was rendered replays to its end: no reload then.
    var initial = document.querySelector("#fact-state .badge");
    var ended = initial && /^(completed|failed|cancelled)$/.test(initial.dataset.state);

    function status(text, cls) {
      live.textContent = text;
      live.className = "badge " + cls;
      live.dataset.state = text;
    }

    // The server rendered the state at page load; keep it current while the build runs.
    function state(name) {
      if (ended) return;
      var badge = document.querySelector("#fact-state .badge");
      if (!badge || badge.dataset.state === name) return;
      badge.textContent = name;
      badge.dataset.state = name;
      badge.className = "badge " + (name === "completed" ? "ok" : name === "failed" ? "bad" : "busy");
    }

    function line(text, cls) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      var span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text + "\n";
      pre.appendChild(span);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }

    function connect() {
      var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
      var ws = new WebSocket(url);
      ws.onopen = function () {
        tries = 0;
        pre.textContent = "";
        status("live", "busy");
        ws.send(JSON.stringify({ type: "subscribe", job_id: job }));
      };
      ws.onmessage = function (ev) {
        var f;
        try { f = JSON.parse(ev.data); } catch (e) { return; }
        switch (f.type) {
          case "log": state("running"); line(f.line, f.stream === "stderr" ? "stderr" : ""); break;
          case "stage": line("== " + f.stage + ": " + f.message, "stage"); break;
          case "queue_update": if (f.position === 0) state("assigned"); line("-- " + f.message + (f.position ? " (position " + f.position + ")" : ""), "muted"); break;
          case "progress": if (f.message) line("-- " + f.stage + " " + f.percent + "%: " + f.message, "muted"); break;
          case "error": line("!! " + f.message, "stderr"); break;
          case "artifact_ready": line("++ artifact " + f.artifact_name + " (" + f.artifact_size + " bytes)", "stage"); break;
          case "complete":
            done = true;
            state(f.success ? "completed" : "failed");
            line(f.success ? "== build succeeded" : "== build did not succeed", f.success ? "stage" : "stderr");
            status(f.success ? "completed" : "ended", f.success ? "ok" : "bad");
            // Reload once, for the final state and artifacts from the database.
            if (!ended) setTimeout(function () { location.reload(); }, 1500);
            break;
        }
      };
      ws.onclose = function () {
        if (done) return;
        status("reconnecting", "wait");
        tries += 1;
        setTimeout(connect, Math.min(1000 * tries, 10000));
      };
    }
    connect();
  }
})();
