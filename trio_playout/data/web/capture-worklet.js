// trio-playout microphone capture (AudioWorklet, processor name "trio-capture").
//
// Turns the microphone into what the server's hello promised: 16-bit little-endian
// signed mono PCM at processorOptions.targetRate (16000), in chunks of
// processorOptions.chunkMs (20 ms). The AudioContext runs at the device rate
// (44.1 or 48 kHz), so the audio is low-pass filtered (windowed sinc below
// 0.45 * targetRate, so nothing aliases) and resampled by linear interpolation
// between filtered samples. Each chunk goes to the page with its RMS level (for the
// meter and the page's own speech-onset stamp) and the audio-clock time of its end.
"use strict";

class TrioCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.chunk = Math.round(this.targetRate * (opts.chunkMs || 20) / 1000);
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.taps = this.step > 1 ? 63 : 1;
    this.h = new Float32Array(this.taps);
    if (this.taps === 1) {
      this.h[0] = 1;
    } else {
      const fc = 0.45 * this.targetRate / sampleRate; // cutoff, cycles per input sample
      const mid = (this.taps - 1) / 2;
      let sum = 0;
      for (let j = 0; j < this.taps; j++) {
        const n = j - mid;
        const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n);
        const w = 0.42 - 0.5 * Math.cos(2 * Math.PI * j / (this.taps - 1))
          + 0.08 * Math.cos(4 * Math.PI * j / (this.taps - 1)); // Blackman
        this.h[j] = sinc * w;
        sum += this.h[j];
      }
      for (let j = 0; j < this.taps; j++) this.h[j] /= sum;
    }
    // Input history twice over, so the filter reads one contiguous window.
    this.hist = new Float32Array(2 * this.taps);
    this.hpos = 0;
    this.prev = 0; // previous filtered sample
    this.t = 1; // where the next output sample lies, in input samples after `prev`
    this.out = new Int16Array(this.chunk);
    this.fill = 0;
    this.energy = 0;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data && e.data.type === "stop") this.running = false; };
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const channels = input.length;
      const n = input[0].length;
      for (let k = 0; k < n; k++) {
        let x = 0;
        for (let c = 0; c < channels; c++) x += input[c][k];
        x /= channels;
        let y = x;
        if (this.taps > 1) {
          this.hist[this.hpos] = x;
          this.hist[this.hpos + this.taps] = x;
          this.hpos = (this.hpos + 1) % this.taps;
          y = 0;
          const base = this.hpos; // oldest sample first
          for (let j = 0; j < this.taps; j++) y += this.h[j] * this.hist[base + j];
        }
        while (this.t <= 1) {
          this.emit(this.prev + (y - this.prev) * this.t, k, n);
          this.t += this.step;
        }
        this.t -= 1;
        this.prev = y;
      }
    }
    return this.running;
  }

  emit(v, k, n) {
    const s = Math.max(-1, Math.min(1, v));
    this.out[this.fill++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
    this.energy += s * s;
    if (this.fill === this.chunk) {
      const buffer = this.out.buffer;
      const rms = Math.sqrt(this.energy / this.chunk);
      const time = currentTime + (k + 1) / sampleRate; // audio-clock time of its last sample
      this.port.postMessage({ type: "pcm", buffer, rms, time }, [buffer]);
      this.out = new Int16Array(this.chunk);
      this.fill = 0;
      this.energy = 0;
    }
  }
}

registerProcessor("trio-capture", TrioCapture);
