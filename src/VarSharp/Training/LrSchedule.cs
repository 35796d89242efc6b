namespace VarSharp.Training;

/// <summary>
/// The reference's lr_wd_annealing (utils/lr_control.py) for the learning rate: linear warmup from wp0·peak to peak
/// over the warmup steps, then one of its decay shapes down to wpe·peak at the last step:
/// "cos" (half cosine), "lin" (the reference's lin00: a straight line) or "lin0" (the VAR trainer's default: hold the
/// peak for the first 5% of the decay span, then a straight line). A pure function of the step, so a resumed run
/// continues the same curve.
/// </summary>
public sealed record LrSchedule(double Peak, int WarmupSteps, int TotalSteps, string Decay = "cos", double WarmupStartRatio = 0.005, double MinRatio = 0.01)
{
    /// <summary>The decay shapes <see cref="At"/> knows.</summary>
    public static IReadOnlyList<string> Decays { get; } = ["cos", "lin", "lin0"];

    /// <summary>The learning rate of the step that starts with <paramref name="step"/> steps done (0-based).</summary>
    public double At(long step)
    {
        double factor;
        if (step < WarmupSteps)
            factor = WarmupStartRatio + (1 - WarmupStartRatio) * step / WarmupSteps;
        else
        {
            long span = TotalSteps - 1 - WarmupSteps;
            double passed = span <= 0 ? 1 : Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
            double rest = 1 - passed;
            factor = Decay switch
            {
                "lin" => MinRatio + (1 - MinRatio) * rest,
                // lin0: T = 0.05; flat while passed < T, then wpe + (1 − wpe)·rest/(1 − T).
                "lin0" => passed < 0.05 ? 1 : MinRatio + (1 - MinRatio) * rest / 0.95,
                _ => MinRatio + (1 - MinRatio) * (0.5 + 0.5 * Math.Cos(Math.PI * passed)),
            };
        }
        return Peak * factor;
    }
}
