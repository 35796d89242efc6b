using System.Globalization;
using System.Text.Json;
using VarSharp.Config;

namespace VarSharp.Tests.Support;

/// <summary>
/// Importing a golden case's .pth files: the options that supply what weights cannot record (heads without
/// attn_l2_norm, the Phi mixing ratio, code search by cosine), read from the case's config, and the config fields an
/// importer can only default (dropout rates, beta, norm eps), so tests compare what the weights determine.
/// </summary>
public static class GoldenImport
{
    public static string[] Args(string caseDir, string output)
    {
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(caseDir, "config.json")));
        var root = config.RootElement;
        var vq = root.GetProperty("vqvae");
        var args = new List<string>
        {
            "import", "--vae", Path.Combine(caseDir, "weights_vae.pth"), "--var", Path.Combine(caseDir, "weights_var.pth"), "--output", output,
            "--heads", root.GetProperty("var").GetProperty("num_heads").GetInt32().ToString(CultureInfo.InvariantCulture),
        };
        if (vq.TryGetProperty("quant_resi", out var resi) && resi.GetDouble() != 0)
            args.AddRange(["--quant-resi", resi.GetDouble().ToString("R", CultureInfo.InvariantCulture)]);
        if (vq.TryGetProperty("using_znorm", out var znorm) && znorm.GetBoolean()) args.Add("--znorm");
        return [.. args];
    }

    /// <summary><paramref name="golden"/> with the fields that no weight records taken from <paramref name="imported"/>.</summary>
    public static VqVaeConfig Comparable(VqVaeConfig golden, VqVaeConfig imported) =>
        golden with { Beta = imported.Beta, Dropout = imported.Dropout };

    /// <inheritdoc cref="Comparable(VqVaeConfig, VqVaeConfig)"/>
    public static VarConfig Comparable(VarConfig golden, VarConfig imported) => golden with
    {
        NormEps = imported.NormEps,
        CondDropRate = imported.CondDropRate,
        DropRate = imported.DropRate,
        AttnDropRate = imported.AttnDropRate,
        DropPathRate = imported.DropPathRate,
        // The weights give the hidden width; a ratio that rounds to the same width is the same model.
        MlpRatio = golden.FfnHidden == (golden with { MlpRatio = imported.MlpRatio }).FfnHidden ? imported.MlpRatio : golden.MlpRatio,
    };

    /// <summary>Two class ids the case's model has: the first and the last.</summary>
    public static string TwoClasses(string caseDir)
    {
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(caseDir, "config.json")));
        int n = config.RootElement.GetProperty("var").GetProperty("num_classes").GetInt32();
        return $"0,{n - 1}";
    }
}
