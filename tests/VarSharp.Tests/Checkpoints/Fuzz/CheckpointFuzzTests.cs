using VarSharp.Checkpoints;
using VarSharp.Checkpoints.Torch;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Checkpoints.Fuzz;

/// <summary>Shared plumbing: a wall-clock guard so a hang fails the test instead of stalling the run.</summary>
internal static class FuzzGuard
{
    public static readonly TimeSpan Overall = TimeSpan.FromSeconds(240);

    public static FuzzReport[] RunAll(ITestOutputHelper output, params Func<FuzzReport>[] batches)
    {
        var task = Task.Run(() => batches.Select(b => b()).ToArray());
        Assert.True(task.Wait(Overall), $"fuzzing did not finish within {Overall.TotalSeconds} s: a case hangs");
        var reports = task.Result;
        foreach (var r in reports) output.WriteLine(r.ToString());
        var violations = reports.SelectMany(r => r.Violations).ToList();
        Assert.True(violations.Count == 0, $"{violations.Count} violations:\n" + string.Join("\n", violations.Take(30)));
        return reports;
    }

    public static long LoadTorch(MemoryStream stream, string name)
    {
        var tensors = TorchCheckpoint.Load(stream, name, "", out long native);
        foreach (var t in tensors.Values) t.Dispose();
        return native;
    }

    public static long LoadSafeTensors(MemoryStream stream, string name)
    {
        var tensors = SafeTensors.Load(stream, name);
        long bytes = tensors.Values.Sum(t => t.numel() * t.element_size());
        foreach (var t in tensors.Values) t.Dispose();
        return bytes;
    }
}

/// <summary>Seeded mutations of the golden .pth files (zip and legacy): every case loads or is refused with our exceptions.</summary>
public class TorchCheckpointFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 20240607;

    [GoldenFact]
    public void MutatedPthFilesLoadOrFailCleanly()
    {
        var golden = SharedData.GoldenCases().First();
        var malicious = Path.Combine(SharedData.GoldenDir, "malicious");
        var var = File.ReadAllBytes(Path.Combine(golden, "weights_var.pth"));
        var vae = File.ReadAllBytes(Path.Combine(golden, "weights_vae.pth"));
        var b01 = File.ReadAllBytes(Path.Combine(malicious, "b01_benign_zip_views_dtypes.pth"));
        var b02 = File.ReadAllBytes(Path.Combine(malicious, "b02_benign_legacy_format.pth"));
        int b02Pickles = LegacyPicklesEnd(b02);

        var reports = FuzzGuard.RunAll(output,
            () => Fuzzer.Run("weights_var.pth", var, Mutators.ForZip(var), 900, Seed, FuzzGuard.LoadTorch, nativeFactor: 2),
            () => Fuzzer.Run("weights_vae.pth", vae, Mutators.ForZip(vae), 300, Seed + 1, FuzzGuard.LoadTorch, nativeFactor: 2),
            () => Fuzzer.Run("b01.pth", b01, Mutators.ForZip(b01), 500, Seed + 2, FuzzGuard.LoadTorch, nativeFactor: 2),
            () => Fuzzer.Run("b02.pth", b02, Mutators.ForLegacy(b02, b02Pickles), 300, Seed + 3, FuzzGuard.LoadTorch, nativeFactor: 2));
        // The mutations reach deep: some cases still load, and the pickle checks (not only the zip checks) fire.
        Assert.True(reports.Sum(r => r.Loaded) > 0);
        Assert.Contains(reports.SelectMany(r => r.Refusals.Keys), k => k is nameof(TorchCheckpointReason.ForbiddenOpcode));
        Assert.Contains(reports.SelectMany(r => r.Refusals.Keys), k => k is nameof(TorchCheckpointReason.TensorOutOfBounds) or nameof(TorchCheckpointReason.RecordSizeMismatch));
    }

    // The storages of a legacy file follow its fifth pickle; the raw counts start where the byte stream stops being pickles.
    private static int LegacyPicklesEnd(byte[] b)
    {
        int stops = 0;
        for (int i = 0; i < b.Length; i++)
            if (b[i] == '.' && ++stops == 5) return i + 1;
        return b.Length;
    }
}

/// <summary>Seeded mutations of a golden safetensors file: every case loads or is refused with our exceptions.</summary>
public class SafeTensorsFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 77;

    [GoldenFact]
    public void MutatedSafeTensorsFilesLoadOrFailCleanly()
    {
        var golden = SharedData.GoldenCases().First();
        var weights = File.ReadAllBytes(Path.Combine(golden, "weights.safetensors"));
        var reports = FuzzGuard.RunAll(output,
            () => Fuzzer.Run("weights.safetensors", weights, Mutators.ForSafeTensors(weights), 1000, Seed, FuzzGuard.LoadSafeTensors, nativeFactor: 1));
        Assert.True(reports.Sum(r => r.Loaded) > 0);
    }
}
