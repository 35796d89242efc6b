namespace VarSharp.Parity;

/// <summary>How a golden tensor is compared; the numbers are those of ../shared/golden/README.md.</summary>
public enum ToleranceKind
{
    /// <summary>Inputs of the case (images, labels): not recomputed.</summary>
    Input,
    /// <summary>Integer tensors (indices): must be equal.</summary>
    Exact,
    /// <summary>max|Δ| ≤ factor · max(1, max|ref|).</summary>
    ScaledAbsolute,
    /// <summary>|Δ| ≤ factor · |ref| (scalar losses).</summary>
    Relative,
    /// <summary>max|Δ| ≤ factor · max|ref| (gradients and gradient norms).</summary>
    GradientScaled,
    /// <summary>|Δ| ≤ factor absolute, except elements whose gradient is tiny, which may move by 2·lr (after-step parameters).</summary>
    AfterStep,
}

public sealed record Tolerance(ToleranceKind Kind, double Factor)
{
    public override string ToString() => Kind switch
    {
        ToleranceKind.Input => "input",
        ToleranceKind.Exact => "exact",
        ToleranceKind.ScaledAbsolute => $"{Factor:0.#e+0}·max(1,|ref|)",
        ToleranceKind.Relative => $"rel {Factor:0.#e+0}",
        ToleranceKind.GradientScaled => $"{Factor:0.#e+0}·max|ref|",
        ToleranceKind.AfterStep => $"abs {Factor:0.#e+0}",
        _ => Kind.ToString(),
    };

    /// <summary>The rule for a tensor name of vectors.safetensors. Image size selects the 256-px allowance for images.</summary>
    public static Tolerance For(string name, bool isInteger, int imageSize)
    {
        if (name is "inp" or "labels" or "ar.labels") return new(ToleranceKind.Input, 0);
        if (isInteger) return new(ToleranceKind.Exact, 0);
        if (name.StartsWith("var_train.after_step", StringComparison.Ordinal)) return new(ToleranceKind.AfterStep, 5e-5);
        if (name.Contains(".grad.", StringComparison.Ordinal) || name.Contains("grad_norm", StringComparison.Ordinal))
            return new(ToleranceKind.GradientScaled, 1e-3);
        if (name.EndsWith(".loss", StringComparison.Ordinal) || name.EndsWith("vq_loss", StringComparison.Ordinal))
            return new(ToleranceKind.Relative, 1e-5);
        if (name.StartsWith("vae.fhat", StringComparison.Ordinal) || name == "var.x_BLCv_wo_first_l" || (name.StartsWith("ar.", StringComparison.Ordinal) && name.EndsWith(".fhat", StringComparison.Ordinal)))
            return new(ToleranceKind.ScaledAbsolute, 1e-5);
        if (name.StartsWith("ar.cfg", StringComparison.Ordinal) && name.EndsWith(".logits_cfg", StringComparison.Ordinal))
            return new(ToleranceKind.ScaledAbsolute, 1e-4 * (1 + 2 * CfgOf(name)));
        bool isImage = name.StartsWith("vae.rec", StringComparison.Ordinal) || name == "vae_train.rec" || name.EndsWith(".img", StringComparison.Ordinal);
        return new(ToleranceKind.ScaledAbsolute, isImage && imageSize >= 256 ? 2e-4 : 1e-4);
    }

    /// <summary>
    /// The guidance scale in a name like `ar.cfg4.logits_cfg`, `ar.cfg1.5.img` or `ar.cfg1p5.img`: the text between
    /// "ar.cfg" and the last dot (the tensor's own name never has one); NaN when it is not a number, so that such a
    /// name matches no guidance scale and fails instead of being taken for another.
    /// </summary>
    public static double CfgOf(string name)
    {
        var rest = name["ar.cfg".Length..];
        int dot = rest.LastIndexOf('.');
        var text = (dot >= 0 ? rest[..dot] : rest).TrimStart('_').Replace('p', '.');
        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var cfg) ? cfg : double.NaN;
    }
}
