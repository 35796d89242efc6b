using System.Globalization;

namespace VarSharp.Training;

/// <summary>
/// The reference's lr_wd_annealing (utils/lr_control.py) for the learning rate: linear warmup from wp0·peak to peak
/// over the warmup steps, then one of its decay shapes (the <c>sche</c> names, with the reference's meaning) down to
/// wpe·peak at the last step:
/// "cos" (half cosine); "lin", "lin0" (the VAR trainer's default) and "lin00": hold the peak for the first 15%, 5% or
/// 0% of the decay span, then a straight line; "linT" for another T in (0, 1), e.g. "lin0.3": a line from the peak
/// to a midpoint level at T, then another to the floor; "exp": hold for 15%, then exponential. A pure function of the
/// step, so a resumed run continues the same curve.
/// </summary>
public sealed record LrSchedule(double Peak, int WarmupSteps, int TotalSteps, string Decay = "cos", double WarmupStartRatio = 0.005, double MinRatio = 0.01)
{
    /// <summary>The fixed decay names <see cref="At"/> knows; "linT" with a T in (0, 1) is accepted too.</summary>
    public static IReadOnlyList<string> Decays { get; } = ["cos", "lin", "lin0", "lin00", "exp"];

    /// <summary>Whether <paramref name="decay"/> names a shape <see cref="At"/> knows.</summary>
    public static bool IsKnown(string decay) => Decays.Contains(decay) || GeneralLinT(decay) is not null;

    /// <summary>The one-sentence description of the accepted names, for errors.</summary>
    public const string KnownText = "'cos', 'lin', 'lin0', 'lin00', 'exp' or 'linT' with T in (0, 1) such as 'lin0.3'";

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
            factor = Decay switch
            {
                "cos" => MinRatio + (1 - MinRatio) * (0.5 + 0.5 * Math.Cos(Math.PI * passed)),
                "lin" => HoldThenLine(passed, 0.15),
                "lin0" => HoldThenLine(passed, 0.05),
                "lin00" => MinRatio + (1 - MinRatio) * (1 - passed),
                "exp" => passed < 0.15 ? 1 : Math.Exp((passed - 0.15) / 0.85 * Math.Log(MinRatio)),
                _ => TwoLines(passed, GeneralLinT(Decay) ?? throw new InvalidOperationException($"unknown decay '{Decay}'; use {KnownText}.")),
            };
        }
        return Peak * factor;
    }

    // Flat while passed < T, then wpe + (1 − wpe)·rest/(1 − T): continuous at T, wpe at the end.
    private double HoldThenLine(double passed, double t) => passed < t ? 1 : MinRatio + (1 - MinRatio) * (1 - passed) / (1 - t);

    // The reference's generic "lin<T>": from 1 down to a midpoint level at T, then down to wpe.
    private double TwoLines(double passed, double t)
    {
        double maxRest = 1 - t;
        double mid = (1 + MinRatio + (1 - MinRatio) * maxRest) / 2;
        return passed < t ? 1 + (mid - 1) * passed / t : MinRatio + (mid - MinRatio) * (1 - passed) / maxRest;
    }

    private static double? GeneralLinT(string decay) =>
        decay.StartsWith("lin", StringComparison.Ordinal) && decay.Length > 3
        && double.TryParse(decay.AsSpan(3), NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out var t) && t > 0 && t < 1
            ? t
            : null;
}
