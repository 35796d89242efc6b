namespace VarSharp.Training;

/// <summary>
/// The reference's lr_wd_annealing (utils/lr_control.py) for the learning rate: linear warmup from wp0·peak to peak
/// over the warmup steps, then "cos" (half cosine) or "lin" (the reference's lin00: straight line) down to wpe·peak at
/// the last step. A pure function of the step, so a resumed run continues the same curve.
/// </summary>
public sealed record LrSchedule(double Peak, int WarmupSteps, int TotalSteps, string Decay = "cos", double WarmupStartRatio = 0.005, double MinRatio = 0.01)
{
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
            factor = Decay == "lin"
                ? MinRatio + (1 - MinRatio) * (1 - passed)
                : MinRatio + (1 - MinRatio) * (0.5 + 0.5 * Math.Cos(Math.PI * passed));
        }
        return Peak * factor;
    }
}
