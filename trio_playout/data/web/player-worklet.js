// trio-playout agent audio player (AudioWorklet, processor name "trio-player").
//
// The server's sink is this processor: it plays each segment of agent audio and
// reports what it really output, counted in samples here, because the server writes
// the heard text of an interrupted reply from these positions. Reports (to the page,
// which forwards them to the server as JSON):
//   started  {segment}                 the first sample of the segment was output
//   progress {segment, position}       about every 100 ms of output while playing
//   finished {segment, position}       flushed and every sample played
//   cleared  {segment, position}       one per unfinished segment on a clear
//   paused   {segment|null, position}  on pause (position frozen until resume)
//   resumed  {}                        on resume
// Every report also carries `time`, the audio-clock time of the sample where it took
// effect, and paused/cleared carry `audible` (agent audio was coming out when it
// stopped), for the page's barge-in timeline; the page forwards only type, segment
// and position.
//
// Messages from the page, in the order the server sent them:
//   {type:"segment", segment, rate}, {type:"audio", segment, pcm: ArrayBuffer of
//   Int16 LE mono at the segment's rate}, {type:"flush", segment}, {type:"clear"},
//   {type:"pause"}, {type:"resume"}, {type:"reset"}.
// Audio is resampled to the context rate (linear interpolation) as it arrives.
// A clear also ends a pause (the server's sinks do the same: what comes after the
// clear must play). An empty buffer before the flush is an underrun: silence, and
// the position does not move.
"use strict";

const PROGRESS_EVERY = 0.1; // seconds of output between progress reports

class Segment {
  constructor(id, rate) {
    this.id = id;
    this.rate = rate;
    this.step = rate / sampleRate; // input samples per output sample
    this.chunks = []; // Float32Array at the context rate
    this.read = 0; // index into chunks[0]
    this.queued = 0; // output samples waiting
    this.played = 0; // output samples played
    this.flushed = false;
    this.started = false;
    this.prev = 0; // last input sample (resampler state)
    this.t = 1; // next output position, in input samples after `prev` (1: the first sample)
    this.sinceProgress = 0;
  }

  add(pcm) {
    const input = new Int16Array(pcm, 0, pcm.byteLength >> 1);
    const L = input.length;
    if (L === 0) return;
    // Positions count input samples: 0 is `prev` (the last sample of the previous
    // message), j is input[j - 1]. Output samples lie at t, t + step, ... up to L.
    let t = this.t;
    const count = t <= L ? Math.floor((L - t) / this.step + 1e-9) + 1 : 0;
    const out = new Float32Array(count);
    for (let m = 0; m < count; m++, t += this.step) {
      const i = Math.floor(t);
      const frac = t - i;
      const a = i === 0 ? this.prev : input[i - 1] / 32768;
      const b = frac > 0 && i < L ? input[i] / 32768 : a;
      out[m] = a + (b - a) * frac;
    }
    this.t = t - L;
    this.prev = input[L - 1] / 32768;
    if (count > 0) {
      this.chunks.push(out);
      this.queued += count;
    }
  }
}

class TrioPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.paused = false;
    this.underruns = 0;
    this.outputting = false; // the last render quantum held agent audio
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  report(type, fields, offset) {
    // `time`: the audio-clock time of the sample where it happened (messages act
    // between render quanta, at currentTime; the player's own events at sample `offset`)
    this.port.postMessage(Object.assign({ type, time: currentTime + (offset || 0) / sampleRate }, fields));
  }

  find(id) {
    for (const seg of this.queue) if (seg.id === id) return seg;
    return null;
  }

  onMessage(m) {
    switch (m.type) {
      case "segment":
        this.queue.push(new Segment(m.segment, m.rate));
        break;
      case "audio": {
        const seg = this.find(m.segment);
        if (seg && !seg.flushed) seg.add(m.pcm);
        break;
      }
      case "flush": {
        const seg = this.find(m.segment);
        if (seg) seg.flushed = true;
        break;
      }
      case "clear":
        for (const seg of this.queue) {
          this.report("cleared", { segment: seg.id, position: seg.played / sampleRate,
            audible: this.outputting && !this.paused });
        }
        this.queue = [];
        this.paused = false;
        break;
      case "pause": {
        const seg = this.queue[0];
        this.report("paused", { segment: seg ? seg.id : null, position: seg ? seg.played / sampleRate : 0,
          audible: this.outputting && !this.paused });
        this.paused = true;
        break;
      }
      case "resume":
        this.paused = false;
        this.report("resumed", {});
        break;
      case "reset":
        this.queue = [];
        this.paused = false;
        break;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!out) return true;
    out.fill(0);
    this.outputting = false;
    if (this.paused) return true;
    let k = 0;
    while (k < out.length && this.queue.length > 0) {
      const seg = this.queue[0];
      if (seg.queued > 0) {
        if (!seg.started) {
          seg.started = true;
          this.report("started", { segment: seg.id }, k);
        }
        const chunk = seg.chunks[0];
        const n = Math.min(out.length - k, chunk.length - seg.read);
        out.set(chunk.subarray(seg.read, seg.read + n), k);
        this.outputting = true;
        k += n;
        seg.read += n;
        seg.queued -= n;
        seg.played += n;
        seg.sinceProgress += n;
        if (seg.read === chunk.length) {
          seg.chunks.shift();
          seg.read = 0;
        }
        if (seg.sinceProgress >= PROGRESS_EVERY * sampleRate) {
          seg.sinceProgress = 0;
          this.report("progress", { segment: seg.id, position: seg.played / sampleRate }, k);
        }
      } else if (seg.flushed) {
        this.report("finished", { segment: seg.id, position: seg.played / sampleRate }, k);
        this.queue.shift();
      } else {
        if (seg.started) this.underruns++;
        break; // waiting for more audio
      }
    }
    return true;
  }
}

registerProcessor("trio-player", TrioPlayer);
