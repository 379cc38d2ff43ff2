// AudioWorklet: a stream's level in ~10 ms blocks on the context clock, for the reply timer
// (src/voice/heard.ts). Each block reports its RMS and the time of its first sample at or above
// `soundPeak`, so the first sound of a reply is timed to the sample, not to the block.
class LevelTap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.soundPeak = opts.soundPeak || 0.01;
    this.blockSamples = Math.round(sampleRate / 100);
    this.reset(0);
  }

  reset(start) {
    this.start = start;
    this.count = 0;
    this.sum = 0;
    this.firstLoud = null;
  }

  process(inputs) {
    const input = inputs[0];
    const samples = input && input.length > 0 ? input[0] : null;
    const n = samples ? samples.length : 128;
    if (this.count === 0) this.start = currentTime;
    for (let i = 0; i < n; i++) {
      const x = samples ? samples[i] : 0;
      this.sum += x * x;
      if (this.firstLoud === null && Math.abs(x) >= this.soundPeak) this.firstLoud = currentTime + i / sampleRate;
    }
    this.count += n;
    if (this.count >= this.blockSamples) {
      this.port.postMessage({ start: this.start, end: this.start + this.count / sampleRate,
        rms: Math.sqrt(this.sum / this.count), firstLoud: this.firstLoud });
      this.reset(0);
    }
    return true;
  }
}

registerProcessor("level-tap", LevelTap);
