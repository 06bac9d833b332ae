// Ringtone and ringback, synthesised with WebAudio (no sound files to fetch).
// Browsers only allow audio after the person interacted with the page; before that these
// stay silent, which is the best a web page can do.

let context = null;
let playing = null;

function audio() {
  if (!context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    context = new Context();
  }
  return context;
}

/** Call once from a user gesture so later rings can be heard. */
export function unlock() {
  const ctx = audio();
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
}

function beep(ctx, at, frequencies, length, volume) {
  const gain = ctx.createGain();
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(volume, at + 0.02);
  gain.gain.setValueAtTime(volume, at + length - 0.05);
  gain.gain.linearRampToValueAtTime(0, at + length);
  gain.connect(ctx.destination);
  for (const frequency of frequencies) {
    const osc = ctx.createOscillator();
    osc.type = "sine";
    osc.frequency.value = frequency;
    osc.connect(gain);
    osc.start(at);
    osc.stop(at + length);
  }
}

const PATTERNS = {
  // A friendly two-note chime, twice, every 3 s.
  ring: { every: 3000, play: (ctx, t) => {
    beep(ctx, t, [659.25], 0.18, 0.09);
    beep(ctx, t + 0.2, [880], 0.28, 0.09);
    beep(ctx, t + 0.7, [659.25], 0.18, 0.09);
    beep(ctx, t + 0.9, [880], 0.28, 0.09);
  } },
  // The classic ringback: 440 + 480 Hz, 2 s on, 4 s off.
  ringback: { every: 6000, play: (ctx, t) => beep(ctx, t, [440, 480], 2.0, 0.04) },
};

export function start(kind) {
  if (playing?.kind === kind) return;
  stop();
  const ctx = audio();
  if (!ctx || ctx.state !== "running") return;
  const pattern = PATTERNS[kind];
  const tick = () => pattern.play(ctx, ctx.currentTime + 0.05);
  tick();
  playing = { kind, timer: setInterval(tick, pattern.every) };
}

export function stop() {
  if (playing) clearInterval(playing.timer);
  playing = null;
}
