// trio-playout browser client: one conversation over one websocket (protocol 1).
//
// Up: a hello, then the microphone as 16-bit LE mono PCM at 16 kHz in 20 ms binary
// messages (capture-worklet.js), and the player's reports as JSON (started,
// progress, finished, cleared, paused, resumed) with the positions that
// player-worklet.js really output: the server writes the heard text from them.
// Down: segment / flush / clear / pause / resume control messages, binary agent
// audio for the current segment, and UI events. Plain script, no build step, no
// network beyond the page's own server. window.trioPage exposes the page's state
// (the browser tests read it; it is handy in the console too).
"use strict";

(() => {
  const MIC_RATE = 16000;
  const CHUNK_MS = 20;
  const ONSET_RMS = 0.02; // about -34 dBFS: louder than room noise, softer than speech
  const ONSET_QUIET_MS = 300; // an onset needs this much quiet before it
  const CLOSE_TEXT = {
    1000: "closed",
    1001: "the server is shutting down",
    1003: "the server refused our data (not 16-bit PCM?)",
    1006: "connection lost (no close frame)",
    1007: "the server could not read a message",
    1008: "refused: wrong token or origin",
    1009: "a message was too big",
    1011: "the server hit an error",
    1013: "the server is full; try again later",
    4408: "no hello in time",
    4409: "the page did not keep up with the server",
    4410: "idle for too long",
    4429: "too many messages (or microphone audio faster than real time)",
  };

  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const keep = (list, item, max) => { list.push(item); if (list.length > max) list.splice(0, list.length - max); };

  const page = {
    connection: "idle", closeCode: null, closeReason: "",
    sent: { hello: 0, pcm: 0, started: 0, progress: 0, finished: 0, cleared: 0, paused: 0, resumed: 0 },
    received: { segment: 0, flush: 0, clear: 0, pause: 0, resume: 0, event: 0, audio: 0, audioBytes: 0, other: 0 },
    reports: [], // player reports as sent, with the page's time stamp (ms)
    events: [], // UI events from the server
    onsets: [], // the page's own speech-onset stamps (ms, performance.now clock)
    bargeIns: [], // the timeline's entries
    agentState: "idle", userState: "listening", transcript: "", history: [],
    segments: {}, // segment -> {rate, samples}: the agent audio the page received
    micSamples: 0, sampleRate: null, outputLatency: null, server: null, errors: [],
  };
  window.trioPage = page;

  let ctx = null; let player = null; let capture = null; let stream = null; let ws = null;
  let outMeter = null; let segment = null; let quietMs = ONSET_QUIET_MS; let micLevel = 0;
  let pending = null; // a stop the server asked for, waiting for the player's report
  let attempt = 0; // bumped by every start and stop: a start that was overtaken gives up
  let offered = null; // whether this server takes pause_on_speech_start (null: not said yet)

  // ---- connection status ----------------------------------------------------
  function setConn(state, text) {
    page.connection = state;
    const el = $("conn");
    el.dataset.state = state;
    el.textContent = text || state;
  }

  function showClose(code, reason) {
    const el = $("close-reason");
    const known = CLOSE_TEXT[code] || "closed";
    el.textContent = `Closed ${code}: ${known}${reason ? ` (${reason})` : ""}`;
    el.classList.toggle("normal", code === 1000);
    el.hidden = code === 1000 && (!reason || reason === "hang up");
  }

  // ---- talk button ----------------------------------------------------------
  async function start() {
    const mine = ++attempt;
    const overtaken = () => mine !== attempt;
    $("talk").setAttribute("aria-pressed", "true");
    $("talk-label").textContent = "Hang up";
    $("close-reason").hidden = true;
    $("pause-on-start").disabled = true;
    setConn("connecting", "connecting…");
    try {
      ctx = new AudioContext({ latencyHint: "interactive" });
      const audio = ctx;
      await audio.resume();
      page.sampleRate = audio.sampleRate;
      await audio.audioWorklet.addModule("/static/player-worklet.js");
      await audio.audioWorklet.addModule("/static/capture-worklet.js");
      if (overtaken()) return;
      player = new AudioWorkletNode(ctx, "trio-player",
        { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
      player.port.onmessage = (e) => onReport(e.data);
      outMeter = ctx.createAnalyser();
      outMeter.fftSize = 512;
      player.connect(outMeter);
      player.connect(ctx.destination);
      await openSocket();
      if (overtaken()) return;
      // The microphone opens after the hello, so its first sample is the server's first.
      // ?aec=0 turns the browser's echo cancellation, noise suppression and gain off.
      const raw = params.get("aec") === "0";
      const mic = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: !raw, noiseSuppression: !raw, autoGainControl: !raw },
      });
      if (overtaken() || !ws) {
        for (const track of mic.getTracks()) track.stop();
        return;
      }
      stream = mic;
      capture = new AudioWorkletNode(ctx, "trio-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { targetRate: MIC_RATE, chunkMs: CHUNK_MS },
      });
      capture.port.onmessage = (e) => onPcm(e.data);
      ctx.createMediaStreamSource(stream).connect(capture);
      capture.connect(ctx.destination); // silent; keeps the node pulled
      page.outputLatency = ctx.outputLatency || ctx.baseLatency || 0;
      requestAnimationFrame(drawMeters);
    } catch (err) {
      if (overtaken()) return;
      if (!err.closed) { // a close already says why
        keep(page.errors, String(err), 20);
        $("close-reason").textContent = `Could not start: ${err.message || err}`;
        $("close-reason").hidden = false;
      }
      stop(1000);
    }
  }

  function stop(code) {
    attempt++;
    if (ws) {
      const socket = ws;
      ws = null;
      socket.onmessage = null;
      if (socket.readyState <= WebSocket.OPEN) socket.close(code || 1000, "hang up");
      setConn("closed", "not connected");
    }
    if (stream) for (const track of stream.getTracks()) track.stop();
    if (capture) capture.port.postMessage({ type: "stop" });
    if (player) player.port.postMessage({ type: "reset" });
    if (ctx) ctx.close();
    ctx = player = capture = stream = outMeter = null;
    segment = null;
    pending = null;
    $("talk").setAttribute("aria-pressed", "false");
    $("talk-label").textContent = "Talk";
    $("pause-on-start").disabled = offered === false;
    $("mic-level").style.width = "0";
    $("out-level").style.width = "0";
  }

  function openSocket() {
    const query = new URLSearchParams();
    if (params.get("token")) query.set("token", params.get("token"));
    if ($("pause-on-start").checked) query.set("pause_on_speech_start", "1");
    const qs = query.toString();
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${qs ? `?${qs}` : ""}`;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      ws = socket;
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: "hello", protocol: 1, sample_rate: MIC_RATE }));
        page.sent.hello++;
        setConn("open", "connected");
        resolve();
      };
      socket.onmessage = (e) => {
        if (typeof e.data === "string") onText(e.data); else onAudio(e.data);
      };
      socket.onclose = (e) => {
        page.closeCode = e.code;
        page.closeReason = e.reason;
        showClose(e.code, e.reason);
        setConn("closed", `closed ${e.code}`);
        if (ws === socket) {
          ws = null;
          stop();
          setConn("closed", `closed ${e.code}`);
        }
        reject(Object.assign(new Error(`websocket closed ${e.code} ${e.reason}`), { closed: true }));
      };
    });
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  // ---- microphone -----------------------------------------------------------
  function onPcm(d) {
    micLevel = Math.max(d.rms * 4, micLevel * 0.85);
    if (d.rms >= ONSET_RMS) {
      // Stamped when the page got the chunk (its audio started one chunk earlier).
      if (quietMs >= ONSET_QUIET_MS) keep(page.onsets, { at: performance.now() - CHUNK_MS, sample: page.micSamples }, 50);
      quietMs = 0;
    } else {
      quietMs += CHUNK_MS;
    }
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(d.buffer);
      page.sent.pcm++;
      page.micSamples += d.buffer.byteLength / 2;
    }
  }

  // ---- from the server ------------------------------------------------------
  function onAudio(data) {
    page.received.audio++;
    page.received.audioBytes += data.byteLength;
    if (segment !== null && page.segments[segment]) page.segments[segment].samples += data.byteLength >> 1;
    if (player && segment !== null) player.port.postMessage({ type: "audio", segment, pcm: data }, [data]);
  }

  function onText(text) {
    let m;
    try { m = JSON.parse(text); } catch (err) { keep(page.errors, `bad JSON from server: ${text.slice(0, 80)}`, 20); return; }
    if (m.type in page.received) page.received[m.type]++; else page.received.other++;
    switch (m.type) {
      case "segment":
        segment = m.segment;
        page.segments[m.segment] = { rate: m.sample_rate, samples: 0 };
        delete page.segments[m.segment - 50];
        if (player) player.port.postMessage({ type: "segment", segment: m.segment, rate: m.sample_rate });
        break;
      case "flush":
        if (player) player.port.postMessage({ type: "flush", segment: m.segment });
        break;
      case "clear":
      case "pause":
        if (!pending) pending = { kind: m.type, commandAt: performance.now() };
        if (m.type === "clear") segment = null;
        if (player) player.port.postMessage({ type: m.type });
        break;
      case "resume":
        if (player) player.port.postMessage({ type: "resume" });
        break;
      case "event":
        onEvent(m);
        break;
      case "session": // the server's first message: this conversation and its options
        page.server = m;
        $("proto").textContent = `protocol ${m.protocol} · conversation ${m.conversation}`
          + ` · mic ${MIC_RATE / 1000} kHz PCM over one websocket`;
        break;
      default:
        page.server = Object.assign(page.server || {}, m);
    }
    if (m.pause_on_speech_start !== undefined) showOption(true, !!m.pause_on_speech_start);
  }

  // ---- the player's reports -------------------------------------------------
  function onReport(r) {
    const msg = { type: r.type };
    if (r.type !== "resumed") msg.segment = r.segment;
    if (r.position !== undefined) msg.position = Math.round(r.position * 1e6) / 1e6;
    send(msg);
    page.sent[r.type]++;
    keep(page.reports, Object.assign({ at: performance.now() }, msg), 400);
    const label = $("player");
    if (r.type === "started" || r.type === "progress") {
      label.textContent = `player: segment ${r.segment} · ${(r.position || 0).toFixed(2)} s played`;
    } else if (r.type === "finished" || r.type === "cleared") {
      label.textContent = `player: segment ${r.segment} ${r.type} at ${r.position.toFixed(2)} s`;
    } else if (r.type === "paused") {
      label.textContent = r.segment === null ? "player: paused (nothing playing)"
        : `player: segment ${r.segment} paused at ${r.position.toFixed(2)} s`;
    } else if (r.type === "resumed") {
      label.textContent = "player: resumed";
    }
    if ((r.type === "paused" || r.type === "cleared") && pending) stopped(r);
  }

  // ---- barge-in timeline ----------------------------------------------------
  // The page stamps (performance.now) when it heard the user's onset in the mic,
  // when the server's pause/clear arrived and when the player stopped its output;
  // the server's barge_in event (sent after the player's confirmation) adds its own
  // side, from the first PCM frame of the speech: decided, sent, confirmed.
  function stopped(r) {
    const stop = pending;
    pending = null;
    if (!r.audible) {
      // Nothing was coming out: no new barge-in. A clear after a barge-in's pause
      // confirms it (the user's words came): the paused audio is dropped.
      const last = page.bargeIns[page.bargeIns.length - 1];
      if (r.type === "cleared" && last && last.kind === "pause" && !last.resumedAt && !last.clearedAt) {
        last.clearedAt = performance.now();
        drawTimeline(last);
      }
      return;
    }
    const at = performance.now();
    const onset = [...page.onsets].reverse().find((o) => o.at <= stop.commandAt && stop.commandAt - o.at < 5000);
    const entry = {
      kind: stop.kind, segment: r.segment, position: r.position,
      onsetAt: onset ? onset.at : null, commandAt: stop.commandAt, stoppedAt: at,
      server: null, resumedAt: null, clearedAt: null,
    };
    keep(page.bargeIns, entry, 20);
    drawTimeline(entry);
  }

  function serverBargeIn(m) {
    const last = page.bargeIns[page.bargeIns.length - 1];
    if (last && !last.server && performance.now() - last.stoppedAt < 3000) {
      last.server = m;
      drawTimeline(last);
    }
  }

  function markResumed() {
    const last = page.bargeIns[page.bargeIns.length - 1];
    if (last && last.kind === "pause" && last.resumedAt === null) {
      last.resumedAt = performance.now();
      drawTimeline(last);
    }
  }

  function drawTimeline(e) {
    $("timeline-empty").hidden = true;
    $("timeline").hidden = false;
    const rows = [];
    const s = e.server;
    const num = (v) => typeof v === "number" && isFinite(v);
    if (s && num(s.decided_ms) && num(s.stopped_ms)) {
      rows.push(["s0", "your speech reached the server", 0]);
      rows.push(["s1", `VAD decided: ${s.action || e.kind}`, s.decided_ms]);
      if (num(s.sent_ms)) rows.push(["s1", `${s.action || e.kind} sent`, s.sent_ms]);
      rows.push(["s2", "player confirmed the stop", s.stopped_ms]);
    } else {
      const t0 = e.onsetAt !== null ? e.onsetAt : e.commandAt;
      if (e.onsetAt !== null) rows.push(["s0", "you started speaking (mic)", 0]);
      rows.push(["s1", `server said ${e.kind}`, e.commandAt - t0]);
      rows.push(["s2", "agent audio stopped (player)", e.stoppedAt - t0]);
    }
    // The bar: the user's speech until the decision (green), then until silence (red).
    const total = Math.max(1, rows[rows.length - 1][2]);
    const decided = rows.find((r) => r[0] === "s1")[2];
    const bar = $("timeline-bar");
    bar.textContent = "";
    for (const [cls, from, to] of [["s0", 0, decided], ["s2", decided, total]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.style.width = `max(3px, ${(100 * (to - from)) / total}%)`;
      bar.appendChild(span);
    }
    const list = $("timeline-marks");
    list.textContent = "";
    for (const [cls, text, at] of rows) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = `sw ${cls}`;
      label.append(sw, text);
      const value = document.createElement("b");
      value.textContent = `${Math.round(at)} ms`;
      li.append(label, value);
      list.appendChild(li);
    }
    const notes = [`cut at ${e.position.toFixed(2)} s of segment ${e.segment}`];
    notes.push(`player stopped ${Math.round(e.stoppedAt - e.commandAt)} ms after the ${e.kind} arrived`
      + (page.outputLatency ? ` (+${Math.round(page.outputLatency * 1000)} ms to the speaker)` : ""));
    if (s && e.onsetAt !== null) notes.push(`mic onset to silence by the page's clock: ${Math.round(e.stoppedAt - e.onsetAt)} ms`);
    if (e.clearedAt) notes.push(`your words confirmed it: interrupted ${((e.clearedAt - e.stoppedAt) / 1000).toFixed(1)} s later`);
    if (e.resumedAt) notes.push(`false interruption: resumed after ${((e.resumedAt - e.stoppedAt) / 1000).toFixed(1)} s`);
    $("timeline-note").textContent = notes.join("\n");
  }

  // ---- UI events ------------------------------------------------------------
  // The pause-on-speech-start option: the server says whether it takes it (a message
  // with a pause_on_speech_start field, its value for this conversation); a server
  // that says nothing before its first state event does not.
  function showOption(isOffered, value) {
    offered = isOffered;
    page.pauseOnSpeechStart = isOffered ? value : null;
    const box = $("pause-on-start");
    $("pause-note").textContent = isOffered ? "" : "(not offered by this server)";
    box.checked = isOffered && value;
    box.disabled = !isOffered || !!ws;
  }

  function onEvent(m) {
    keep(page.events, { at: performance.now(), event: m.event, data: m }, 200);
    if (offered === null && (m.event === "agent_state" || m.event === "user_state")) showOption(false, false);
    switch (m.event) {
      case "agent_state":
        page.agentState = m.state ?? m.new;
        setChip("agent-state", page.agentState);
        break;
      case "user_state":
        page.userState = m.state ?? m.new;
        setChip("user-state", page.userState);
        break;
      case "transcript":
        drawTranscript(m);
        break;
      case "history":
        drawHistory(m);
        break;
      case "false_interruption":
        if (m.resumed) markResumed();
        break;
      case "barge_in":
        serverBargeIn(m);
        break;
      default:
        break;
    }
  }

  function setChip(id, state) {
    const el = $(id);
    el.dataset.state = state;
    el.textContent = state;
  }

  let finalText = "";
  function drawTranscript(m) {
    const el = $("transcript");
    el.classList.remove("muted");
    el.textContent = "";
    if (m.final) {
      finalText = m.text;
      page.transcript = m.text;
      el.textContent = m.text;
    } else {
      const span = document.createElement("span");
      span.className = "interim";
      span.textContent = m.text;
      if (finalText) el.append(`${finalText} `);
      el.appendChild(span);
    }
  }

  function itemText(item) {
    if (typeof item.text === "string") return item.text;
    if (typeof item.content === "string") return item.content;
    if (Array.isArray(item.content)) return item.content.filter((c) => typeof c === "string").join(" ");
    return "";
  }

  function drawHistory(m) {
    const items = Array.isArray(m.items) ? m.items : m.item ? [...page.history, m.item] : page.history;
    page.history = items;
    const list = $("history");
    list.textContent = "";
    for (const item of items) {
      const li = document.createElement("li");
      const role = item.role || item.type || "item";
      li.className = role === "user" || role === "assistant" ? role : "other";
      const who = document.createElement("span");
      who.className = "role";
      who.textContent = role === "assistant" ? "agent" : role === "user" ? "you" : role.replace(/_/g, " ");
      const body = document.createElement("span");
      const text = itemText(item);
      if (li.className === "other") {
        body.className = "tool";
        body.textContent = text || item.name || JSON.stringify(item).slice(0, 120);
      } else {
        body.textContent = text;
        const rest = typeof item.unheard === "string" ? item.unheard
          : typeof item.full_text === "string" && item.full_text.startsWith(text) ? item.full_text.slice(text.length) : "";
        if (rest.trim()) {
          const un = document.createElement("span");
          un.className = "unheard";
          un.textContent = rest;
          body.append(" ", un);
        }
        if (item.interrupted) {
          const cut = document.createElement("span");
          cut.className = "cut";
          cut.textContent = item.position !== undefined ? `interrupted at ${Number(item.position).toFixed(2)} s` : "interrupted";
          body.appendChild(cut);
        }
      }
      li.append(who, body);
      list.appendChild(li);
    }
  }

  // ---- meters ---------------------------------------------------------------
  const outBuf = new Float32Array(512);
  function drawMeters() {
    if (!ctx) return;
    $("mic-level").style.width = `${100 * Math.min(1, micLevel)}%`;
    micLevel *= 0.92;
    if (outMeter) {
      outMeter.getFloatTimeDomainData(outBuf);
      let peak = 0;
      for (const v of outBuf) peak = Math.max(peak, Math.abs(v));
      $("out-level").style.width = `${100 * Math.min(1, peak * 2)}%`;
    }
    requestAnimationFrame(drawMeters);
  }

  // ---- wiring ---------------------------------------------------------------
  $("pause-on-start").checked = params.get("pause_on_speech_start") === "1";
  $("talk").addEventListener("click", () => {
    if (ws || ctx) stop(1000); else start();
  });
})();
