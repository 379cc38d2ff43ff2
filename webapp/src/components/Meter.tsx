// A horizontal level bar. role="meter" so screen readers announce it as a value, not a picture.

export function Meter({ label, level, id }: { label: string; level: number; id: string }) {
  // RMS of speech sits around 0.02-0.3; a square-root curve makes quiet speech visible.
  const percent = Math.round(Math.min(1, Math.sqrt(Math.max(0, level)) * 1.6) * 100);
  return (
    <div className="meter">
      <span className="meter-label" id={`${id}-label`}>
        {label}
      </span>
      <div
        className="meter-track"
        role="meter"
        aria-labelledby={`${id}-label`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent}
        data-testid={id}
      >
        <div className="meter-fill" style={{ width: `${percent}%` }} />
      </div>
    </div>
  );
}
