// AudioWorklet: microphone -> 16 kHz mono s16le chunks for the /ws/audio fallback transport.
//
// Resampling happens here (not by creating a 16 kHz AudioContext) because browsers differ in whether
// a microphone may feed a context running at another rate. Downsampling averages the input samples
// that fall into each output sample's window (a box filter) before picking the value, which keeps
// aliasing low enough for speech recognition without a full polyphase filter.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.chunkSamples = opts.chunkSamples || 320;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.position = 0; // fractional input position of the next output sample, relative to this block
    this.acc = 0;
    this.accCount = 0;
    this.out = new Int16Array(this.chunkSamples);
    this.outIndex = 0;
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.out[this.outIndex++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.outIndex === this.chunkSamples) {
      const chunk = this.out.buffer;
      this.port.postMessage(chunk, [chunk]);
      this.out = new Int16Array(this.chunkSamples);
      this.outIndex = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const samples = input[0];
    for (let i = 0; i < samples.length; i++) {
      this.acc += samples[i];
      this.accCount++;
      if (i + 1 >= this.position + this.step) {
        this.emit(this.acc / this.accCount);
        this.acc = 0;
        this.accCount = 0;
        this.position += this.step;
      }
    }
    this.position -= samples.length;
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
