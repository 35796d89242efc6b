using System.Diagnostics;
using VarSharp.Checkpoints;
using VarSharp.Checkpoints.Torch;

namespace VarSharp.Tests.Checkpoints.Fuzz;

/// <summary>One mutation: a description to reproduce it and the mutated bytes.</summary>
internal sealed record FuzzCase(string Description, byte[] Bytes);

/// <summary>A named way of mutating a file, chosen with a weight.</summary>
internal sealed record Mutator(string Name, int Weight, Func<Random, byte[], byte[]> Apply);

/// <summary>How a loader treated a batch of mutated files, and every violation of the contract.</summary>
internal sealed class FuzzReport
{
    public int Cases { get; set; }
    public int Loaded { get; set; }
    public SortedDictionary<string, int> Refusals { get; } = new(StringComparer.Ordinal);
    public List<string> Violations { get; } = [];
    public TimeSpan Slowest { get; set; }
    public string SlowestCase { get; set; } = "";
    public double MaxManagedRatio { get; set; }
    public double MaxNativeRatio { get; set; }

    public override string ToString() =>
        $"{Cases} cases: {Loaded} loaded, {Cases - Loaded - Violations.Count} refused ({string.Join(", ", Refusals.Select(r => $"{r.Key} {r.Value}"))}); " +
        $"slowest {Slowest.TotalMilliseconds:0} ms ({SlowestCase}); max managed allocation {MaxManagedRatio:0.00}× file, max tensor memory {MaxNativeRatio:0.00}× file; {Violations.Count} violations";
}

/// <summary>
/// Runs a loader over seeded mutations of a file and checks the contract on each: it loads, or it fails with one of our
/// exception types; it never takes longer than <see cref="PerCaseLimit"/>; it never allocates (managed or tensor memory)
/// more than the file's size justifies.
/// </summary>
internal static class Fuzzer
{
    public static readonly TimeSpan PerCaseLimit = TimeSpan.FromSeconds(2);

    /// <summary>VARSHARP_FUZZ_SCALE multiplies every case count (default 1) for longer local runs; the seeds stay the same.</summary>
    public static int Scale { get; } = int.TryParse(Environment.GetEnvironmentVariable("VARSHARP_FUZZ_SCALE"), out var s) && s > 0 ? s : 1;

    /// <summary>Managed bytes a load may allocate: a small multiple of the file plus a fixed allowance for bookkeeping.</summary>
    public static long ManagedBudget(long fileLength) => 4 * fileLength + (16L << 20);

    /// <param name="load">Loads from the stream and returns the bytes of tensor memory it allocated (after disposing the result).</param>
    /// <param name="nativeFactor">How many times the file's length the tensors may occupy.</param>
    public static FuzzReport Run(string file, byte[] original, IReadOnlyList<Mutator> mutators, int cases, int seed,
        Func<MemoryStream, string, long> load, double nativeFactor)
    {
        var report = new FuzzReport();
        int totalWeight = mutators.Sum(m => m.Weight);
        cases *= Scale;
        for (int i = 0; i < cases; i++)
        {
            var rng = new Random(HashCode.Combine(seed, i));
            var bytes = original;
            var names = new List<string>();
            int rounds = rng.Next(6) == 0 ? 2 : 1; // sometimes stack two mutations
            for (int r = 0; r < rounds; r++)
            {
                var m = Pick(mutators, totalWeight, rng);
                bytes = m.Apply(rng, bytes);
                names.Add(m.Name);
            }
            Check(report, new FuzzCase($"{Path.GetFileName(file)} seed {seed} case {i} ({string.Join("+", names)})", bytes), load, nativeFactor);
        }
        return report;
    }

    private static Mutator Pick(IReadOnlyList<Mutator> mutators, int totalWeight, Random rng)
    {
        int x = rng.Next(totalWeight);
        foreach (var m in mutators)
        {
            if (x < m.Weight) return m;
            x -= m.Weight;
        }
        return mutators[^1];
    }

    private static void Check(FuzzReport report, FuzzCase c, Func<MemoryStream, string, long> load, double nativeFactor)
    {
        report.Cases++;
        using var stream = new MemoryStream(c.Bytes, writable: false);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var clock = Stopwatch.StartNew();
        try
        {
            long native = load(stream, "fuzz.bin");
            report.Loaded++;
            double ratio = c.Bytes.Length == 0 ? 0 : (double)native / c.Bytes.Length;
            report.MaxNativeRatio = Math.Max(report.MaxNativeRatio, ratio);
            if (ratio > nativeFactor) report.Violations.Add($"{c.Description}: tensors took {native} bytes from a {c.Bytes.Length}-byte file");
        }
        catch (Exception e) when (e is TorchCheckpointException or SafeTensorsException or VarSharpException)
        {
            string key = e switch
            {
                TorchCheckpointException t => t.Reason.ToString(),
                SafeTensorsException s => s.Rule.ToString(),
                _ => e.GetType().Name,
            };
            report.Refusals[key] = report.Refusals.GetValueOrDefault(key) + 1;
            if (string.IsNullOrWhiteSpace(e.Message) || e.Message.Any(char.IsControl))
                report.Violations.Add($"{c.Description}: message is not one line: {e.Message}");
        }
        catch (Exception e)
        {
            report.Violations.Add($"{c.Description}: {e.GetType().Name}: {e.Message}");
        }
        clock.Stop();
        long managed = GC.GetAllocatedBytesForCurrentThread() - before;
        report.MaxManagedRatio = Math.Max(report.MaxManagedRatio, (double)managed / Math.Max(1, c.Bytes.Length));
        if (managed > ManagedBudget(c.Bytes.Length))
            report.Violations.Add($"{c.Description}: allocated {managed} managed bytes for a {c.Bytes.Length}-byte file");
        if (clock.Elapsed > report.Slowest)
        {
            report.Slowest = clock.Elapsed;
            report.SlowestCase = c.Description;
        }
        if (clock.Elapsed > PerCaseLimit)
            report.Violations.Add($"{c.Description}: took {clock.Elapsed.TotalMilliseconds:0} ms");
    }
}
