namespace VarSharp.Training;

/// <summary>What one step of progressive training trains: scales 0..<see cref="LastScale"/>, the newest weighted by <see cref="NewestWeight"/>.</summary>
/// <param name="LastScale">Index of the last scale in the sequence, or −1 for the whole sequence (no truncation).</param>
/// <param name="NewestWeight">Factor on the loss weights of scale <see cref="LastScale"/>'s tokens (1 when −1).</param>
public readonly record struct ProgressiveStage(int LastScale, double NewestWeight)
{
    public static readonly ProgressiveStage Full = new(-1, 1);

    public bool Truncates => LastScale >= 0;
}

/// <summary>
/// The official trainer's progressive training (<c>--pg</c>, <c>--pg0</c>, <c>--pgwp</c>): during the first
/// <see cref="Fraction"/> of the steps the transformer sees only a prefix of the scales — from scale
/// <see cref="StartScale"/> during warmup, growing linearly (rounded half to even, as Python's round) to the last scale
/// at <see cref="Fraction"/>·steps — and the loss of a newly added scale ramps up over <see cref="StageWarmupSteps"/>
/// steps (from 0.01, except in the first stage). A pure function of the step: the reference keeps the ramp's counters
/// as trainer state, which a resumed run here recomputes from the step, so resuming continues the same schedule.
/// </summary>
public sealed record ProgressiveSchedule(double Fraction, int StartScale, int Scales, int WarmupSteps, int TotalSteps, double StageWarmupSteps)
{
    /// <summary>The reference's default ramp of a new stage: 1/300 of training (pgwp = ep/300).</summary>
    public static double DefaultStageWarmup(int totalSteps) => totalSteps / 300.0;

    public bool Enabled => Fraction > 0;

    /// <summary>A number as Python's <c>f"{x:g}"</c> writes it (six significant digits), for the reference's "lin" + pg decay name.</summary>
    public static string PythonG(double x)
    {
        var text = x.ToString("G6", System.Globalization.CultureInfo.InvariantCulture);
        // .NET writes 1E-05, Python 1e-05; the digits agree.
        return text.Replace('E', 'e');
    }

    /// <summary>The reference's prog_si at a 0-based step: −1 when off, else StartScale … Scales − 1.</summary>
    public int StageIndexAt(long step)
    {
        if (!Enabled) return -1;
        if (step <= WarmupSteps) return StartScale;
        double grownBy = (double)TotalSteps * Fraction;
        if (step >= grownBy) return Scales - 1;
        int delta = Scales - 1 - StartScale;
        double progress = Math.Clamp((step - WarmupSteps) / (grownBy - WarmupSteps), 0, 1);
        return StartScale + (int)Math.Round(progress * delta, MidpointRounding.ToEven);
    }

    /// <summary>What the step that starts with <paramref name="step"/> steps done trains.</summary>
    public ProgressiveStage At(long step)
    {
        int stage = StageIndexAt(step);
        // The last stage is "as if no progressive training": full sequence, full weight at once.
        if (stage < 0 || stage == Scales - 1) return ProgressiveStage.Full;
        if (stage == StageIndexAt(0)) return new ProgressiveStage(stage, 1);   // the lr warmup already eases the first stage in
        long stepsInStage = step - FirstStepOf(stage, step) + 1;
        return new ProgressiveStage(stage, Math.Clamp(stepsInStage / StageWarmupSteps, 0.01, 1));
    }

    // The stage index never decreases with the step, so its first step is found by bisection.
    private long FirstStepOf(int stage, long atOrBefore)
    {
        long lo = 0, hi = atOrBefore;
        while (lo < hi)
        {
            long mid = lo + (hi - lo) / 2;
            if (StageIndexAt(mid) >= stage) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    }
}
