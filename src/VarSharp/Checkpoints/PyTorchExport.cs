using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Checkpoints.Torch;
using VarSharp.Config;

namespace VarSharp.Checkpoints;

/// <summary>One file an export wrote.</summary>
public sealed record ExportedFile(string Path, string Sha256, int Tensors, long Bytes);

/// <summary>
/// What <see cref="PyTorchExport.Run"/> wrote, and how the official code builds the modules those state dicts load into:
/// Python constructor calls, and where the tokenizer leaves what the official VQVAE constructor can express (the VAR
/// class takes every field of ours as an argument).
/// </summary>
public sealed record PyTorchExportResult(
    string OutputDir, ExportedFile? Vae, ExportedFile? Var, string? VqVaeCall, string? VarCall, IReadOnlyList<string> VqVaeDifferences);

/// <summary>
/// A VarSharp model folder → PyTorch checkpoints the official VAR code loads: <c>vae.pth</c> (the <c>vae.*</c> tensors
/// without the prefix, for <c>VQVAE.load_state_dict</c>) and <c>var.pth</c> (the <c>var.*</c> tensors, for
/// <c>VAR.load_state_dict</c>), written by <see cref="TorchCheckpointWriter"/> — plain tensors that
/// <c>torch.load(..., weights_only=True)</c> reads, no code. The bundle is verified as it is read. An
/// <c>export.json</c>, written last, records the source, the digests of the files and the constructor calls; a folder
/// without it holds no complete export.
/// </summary>
public static class PyTorchExport
{
    public const string VaeFile = "vae.pth";
    public const string VarFile = "var.pth";
    public const string ReportFile = "export.json";

    public static PyTorchExportResult Run(string modelDir, string outputDir, bool force = false, BundleTrust? trust = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDir);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputDir);
        var outDir = Path.GetFullPath(outputDir);
        if (File.Exists(outDir)) throw new VarSharpException($"{outDir} is a file; give a folder to export into.");
        ModelBundle.CheckOutsideBundles(outDir, "The export folder");
        var existing = new[] { VaeFile, VarFile, ReportFile }.Select(f => Path.Combine(outDir, f)).FirstOrDefault(File.Exists);
        if (existing is not null && !force)
            throw new VarSharpException($"{existing} already exists; pass --force to replace the export in {outDir}.");

        using var files = ModelFiles.Read(modelDir, _ => true, trust);
        var root = files.Config;
        VqVaeConfig? vq = root.TryGetProperty("vqvae", out _) ? ModelFolder.ReadVqVaeConfig(root, files.ConfigPath) : null;
        VarConfig? var = root.TryGetProperty("var", out _) ? ModelFolder.ReadVarConfig(root, files.ConfigPath) : null;
        var vaeTensors = Strip(files.Weights, "vae.");
        var varTensors = Strip(files.Weights, "var.");
        if (vq is not null && vaeTensors.Count == 0) throw new VarSharpException($"{files.WeightsPath} has no vae.* tensors although the config describes a tokenizer.");
        if (var is not null && varTensors.Count == 0) throw new VarSharpException($"{files.WeightsPath} has no var.* tensors although the config describes a transformer.");
        if (vq is null && var is null) throw new VarSharpException($"{files.ConfigPath} describes neither a tokenizer ('vqvae') nor a transformer ('var').");
        var other = files.Weights.Keys.FirstOrDefault(k => !k.StartsWith("vae.", StringComparison.Ordinal) && !k.StartsWith("var.", StringComparison.Ordinal));
        if (other is not null) throw new VarSharpException($"{files.WeightsPath} holds '{other}', which belongs to neither the tokenizer (vae.*) nor the transformer (var.*).");

        Directory.CreateDirectory(outDir);
        // The files are replaced as a set: the earlier report goes first (a folder without export.json is an export in
        // progress), each .pth replaces its predecessor atomically only once it is complete (so a failure never leaves
        // less than there was), a file the new export does not have goes after both are written, and the report last.
        void Delete(string name)
        {
            var path = Path.Combine(outDir, name);
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new VarSharpException($"Cannot replace {path}: {e.Message}", e);
            }
        }
        Delete(ReportFile);
        ExportedFile? Write(string name, List<KeyValuePair<string, TorchSharp.torch.Tensor>> tensors)
        {
            if (tensors.Count == 0) return null;
            var path = Path.Combine(outDir, name);
            long bytes = TorchCheckpointWriter.Write(path, tensors);
            return new ExportedFile(path, FileDigest.Sha256(path), tensors.Count, bytes);
        }
        var vae = Write(VaeFile, vaeTensors);
        var varFile = Write(VarFile, varTensors);
        if (vae is null) Delete(VaeFile);
        if (varFile is null) Delete(VarFile);

        var result = new PyTorchExportResult(outDir, vae, varFile,
            vq is null ? null : VqVaeCall(vq), var is null ? null : VarCall(var),
            vq is null ? [] : VqVaeDifferences(vq));
        var report = new JsonObject
        {
            ["format"] = "varsharp-pytorch-export-v1",
            ["source"] = Path.GetFullPath(modelDir),
            ["source_weights_sha256"] = files.WeightsSha256,
            ["files"] = new JsonObject(new[] { vae, varFile }.Where(f => f is not null).Select(f => KeyValuePair.Create(
                System.IO.Path.GetFileName(f!.Path), (JsonNode?)new JsonObject { ["sha256"] = f.Sha256, ["tensors"] = f.Tensors, ["bytes"] = f.Bytes }))),
            ["vqvae_call"] = result.VqVaeCall,
            ["var_call"] = result.VarCall,
            ["vqvae_differences_from_official"] = new JsonArray(result.VqVaeDifferences.Select(d => (JsonNode?)d).ToArray()),
        };
        AtomicFile.Write(Path.Combine(outDir, ReportFile), System.Text.Encoding.UTF8.GetBytes(report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
        return result;
    }

    private static List<KeyValuePair<string, TorchSharp.torch.Tensor>> Strip(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string prefix) =>
        weights.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], kv.Value))
            .ToList();

    /// <summary>The official <c>models.vqvae.VQVAE</c> call that builds this tokenizer (where its fixed ddconfig allows).</summary>
    public static string VqVaeCall(VqVaeConfig c) => FormattableString.Invariant(
        $"VQVAE(vocab_size={c.VocabSize}, z_channels={c.ZChannels}, ch={c.Ch}, dropout={Py(c.Dropout)}, beta={Py(c.Beta)}, using_znorm={Py(c.UsingZnorm)}, quant_conv_ks={c.QuantConvKs}, quant_resi={Py(c.QuantResi)}, share_quant_resi={c.ShareQuantResi}, default_qresi_counts={c.DefaultQresiCounts}, v_patch_nums={Py(c.VPatchNums)}, test_mode=True)");

    /// <summary>The official <c>models.var.VAR</c> call that builds this transformer on a tokenizer <c>vae</c>.</summary>
    public static string VarCall(VarConfig c) => FormattableString.Invariant(
        $"VAR(vae_local=vae, num_classes={c.NumClasses}, depth={c.Depth}, embed_dim={c.EmbedDim}, num_heads={c.NumHeads}, mlp_ratio={Py(c.MlpRatio)}, drop_rate={Py(c.DropRate)}, attn_drop_rate={Py(c.AttnDropRate)}, drop_path_rate={Py(c.DropPathRate)}, norm_eps={Py(c.NormEps)}, shared_aln={Py(c.SharedAln)}, cond_drop_rate={Py(c.CondDropRate)}, attn_l2_norm={Py(c.AttnL2Norm)}, patch_nums={Py(c.PatchNums)}, flash_if_available=False, fused_if_available=False)");

    /// <summary>
    /// Where the tokenizer leaves the official VQVAE's fixed encoder/decoder config (ddconfig: 3 input channels, ch_mult
    /// 1,1,2,2,4, 2 res blocks, attention in the last level and the middle): the state dict then needs a VQVAE built
    /// with a modified ddconfig.
    /// </summary>
    public static IReadOnlyList<string> VqVaeDifferences(VqVaeConfig c)
    {
        var d = new List<string>();
        if (c.InChannels != 3) d.Add($"in_channels {c.InChannels} (official: 3)");
        if (!c.ChMult.SequenceEqual([1, 1, 2, 2, 4])) d.Add($"ch_mult ({string.Join(", ", c.ChMult)}) (official: (1, 1, 2, 2, 4))");
        if (c.NumResBlocks != 2) d.Add($"num_res_blocks {c.NumResBlocks} (official: 2)");
        if (!c.UsingSa) d.Add("using_sa False (official: True)");
        if (!c.UsingMidSa) d.Add("using_mid_sa False (official: True)");
        return d;
    }

    private static string Py(bool b) => b ? "True" : "False";
    private static string Py(double v) => v.ToString("R", CultureInfo.InvariantCulture) is var s && (s.Contains('.') || s.Contains('E')) ? s : s + ".0";
    private static string Py(int[] values) => values.Length == 1 ? $"({values[0]},)" : "(" + string.Join(", ", values) + ")";
}
