using System.Text.Json;
using TorchSharp;
using VarSharp.Checkpoints.Torch;
using VarSharp.Tests.Support;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Checkpoints.Torch;

/// <summary>
/// Every file in golden/malicious is discovered and checked against its expected.json entry: `refuse` files must fail
/// with a <see cref="TorchCheckpointException"/> of the right reason and leave no trace, benign ones must load exactly
/// the listed values.
/// </summary>
public class MaliciousCheckpointTests(ITestOutputHelper output)
{
    private static string Dir => Path.Combine(SharedData.GoldenDir, "malicious");

    /// <summary>The precise reason for the files we know; a file added later only has to match its category.</summary>
    private static readonly Dictionary<string, TorchCheckpointReason> KnownReasons = new()
    {
        ["m01_rce_os_system.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m02_rce_builtins_eval.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m03_rce_subprocess_popen.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m04_rce_nested_load_from_bytes.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m05_legacy_format_rce.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m06_truncated_zip.pth"] = TorchCheckpointReason.ZipCorrupt,
        ["m07_crc_mismatch.pth"] = TorchCheckpointReason.ZipCorrupt,
        ["m08_shape_exceeds_storage.pth"] = TorchCheckpointReason.TensorOutOfBounds,
        ["m09_record_shorter_than_storage.pth"] = TorchCheckpointReason.RecordSizeMismatch,
        ["m10_numel_overflow.pth"] = TorchCheckpointReason.SizeOverflow,
        ["m11_offset_out_of_bounds.pth"] = TorchCheckpointReason.TensorOutOfBounds,
        ["m12_zip_path_traversal.pth"] = TorchCheckpointReason.UnsafeEntryName,
        ["m13_deflate_bomb.pth"] = TorchCheckpointReason.CompressedEntry,
        ["m14_pickle_ext_opcode.pth"] = TorchCheckpointReason.ForbiddenOpcode,
        ["m15_rce_builtins_eval_py3name_stack_global.pth"] = TorchCheckpointReason.ForbiddenGlobal,
        ["m16_rce_subprocess_popen_py3name.pth"] = TorchCheckpointReason.ForbiddenGlobal,
    };

    private static readonly Dictionary<string, TorchCheckpointReason[]> CategoryReasons = new()
    {
        ["RCE"] = [TorchCheckpointReason.ForbiddenGlobal, TorchCheckpointReason.ForbiddenOpcode],
        ["RCE-adjacent"] = [TorchCheckpointReason.ForbiddenOpcode, TorchCheckpointReason.ForbiddenGlobal],
        ["legacy-format+RCE"] = [TorchCheckpointReason.ForbiddenGlobal, TorchCheckpointReason.ForbiddenOpcode, TorchCheckpointReason.LegacyFormat],
        ["corrupt"] = [TorchCheckpointReason.ZipCorrupt, TorchCheckpointReason.CrcMismatch],
        ["out-of-bounds"] = [TorchCheckpointReason.TensorOutOfBounds, TorchCheckpointReason.RecordSizeMismatch, TorchCheckpointReason.SizeOverflow],
        ["zip-slip"] = [TorchCheckpointReason.UnsafeEntryName],
        ["resource"] = [TorchCheckpointReason.CompressedEntry, TorchCheckpointReason.ResourceLimit],
    };

    private static readonly string[] Markers = ["/tmp/pwned_by_checkpoint", "/tmp/pwned_by_checkpoint_zipslip"];

    [GoldenFact]
    public void EveryFileHasAnExpectationAndEveryExpectationAFile()
    {
        using var expected = ReadExpected();
        var files = Directory.GetFiles(Dir, "*.pth").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToList();
        var listed = expected.RootElement.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(files);
        Assert.Equal(listed, files);
    }

    [GoldenFact]
    public void RefusedFilesFailWithTheirReasonAndLeaveNoTrace()
    {
        using var expected = ReadExpected();
        var markersBefore = Markers.Where(File.Exists).ToHashSet();
        var childrenBefore = ChildProcesses();
        int refused = 0;
        foreach (var entry in expected.RootElement.EnumerateObject())
        {
            if (!entry.Value.GetProperty("expect").GetString()!.StartsWith("refuse", StringComparison.Ordinal)) continue;
            var path = Path.Combine(Dir, entry.Name);
            var e = Assert.Throws<TorchCheckpointException>(() => DisposeAll(TorchCheckpoint.Load(path)));
            output.WriteLine($"{entry.Name}: {e.Reason}: {e.Message}");
            Assert.StartsWith(path, e.Message, StringComparison.Ordinal);
            Assert.EndsWith(".", e.Message, StringComparison.Ordinal);

            var category = entry.Value.GetProperty("category").GetString()!;
            if (KnownReasons.TryGetValue(entry.Name, out var reason)) Assert.Equal(reason, e.Reason);
            else Assert.Contains(e.Reason, CategoryReasons[category]);

            // A refused global is named in the message, and it is one the pickle really references.
            if (e.Reason == TorchCheckpointReason.ForbiddenGlobal && entry.Value.TryGetProperty("pickle_globals", out var globals))
            {
                var names = globals.EnumerateArray().Select(g => g.GetString()!.Split(' ')[0]).ToList();
                Assert.Contains(names, n => e.Message.Contains($"'{n}'", StringComparison.Ordinal));
            }
            // ReadLayout refuses as well, for the same reason unless the fault is in tensor bytes it does not read.
            if (e.Reason is not (TorchCheckpointReason.CrcMismatch or TorchCheckpointReason.BadTensorData))
                Assert.Equal(e.Reason, Assert.Throws<TorchCheckpointException>(() => TorchCheckpoint.ReadLayout(path)).Reason);
            refused++;
        }
        Assert.True(refused > 0);

        // No payload ran: the marker files do not appear and no child process was started and left behind.
        foreach (var marker in Markers.Where(m => !markersBefore.Contains(m))) Assert.False(File.Exists(marker), $"{marker} was created");
        Assert.Empty(ChildProcesses().Except(childrenBefore));
    }

    [GoldenFact]
    public void AcceptedFilesLoadExactlyTheExpectedValues()
    {
        using var expected = ReadExpected();
        int accepted = 0;
        foreach (var entry in expected.RootElement.EnumerateObject())
        {
            if (!entry.Value.TryGetProperty("expected_values", out var values)) continue;
            var path = Path.Combine(Dir, entry.Name);
            var tensors = TorchCheckpoint.Load(path);
            try
            {
                Assert.Equal(values.EnumerateObject().Select(v => v.Name), tensors.Keys);
                foreach (var v in values.EnumerateObject()) AssertTensorEquals(entry.Name + ":" + v.Name, v.Value, tensors[v.Name]);
                var layout = TorchCheckpoint.ReadLayout(path);
                Assert.Equal(tensors.Keys, layout.Select(l => l.Name));
                Assert.All(layout, l => Assert.Equal(tensors[l.Name].shape, l.Shape));
            }
            finally
            {
                DisposeAll(tensors);
            }
            accepted++;
        }
        Assert.True(accepted >= 1);
    }

    private static void AssertTensorEquals(string what, JsonElement spec, Tensor actual)
    {
        var dtype = spec.GetProperty("dtype").GetString() switch
        {
            "float32" => ScalarType.Float32,
            "float16" => ScalarType.Float16,
            "bfloat16" => ScalarType.BFloat16,
            "int64" => ScalarType.Int64,
            "bool" => ScalarType.Bool,
            var other => throw new InvalidOperationException($"{what}: dtype {other} not handled by the test"),
        };
        Assert.Equal(dtype, actual.dtype);
        Assert.Equal(spec.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), actual.shape);
        Assert.True(actual.is_contiguous(), $"{what} is not contiguous");
        var flat = new List<JsonElement>();
        Flatten(spec.GetProperty("values"), flat);
        Assert.Equal(flat.Count, (int)actual.numel());
        using var f = actual.reshape(-1);
        for (int i = 0; i < flat.Count; i++)
        {
            switch (dtype)
            {
                case ScalarType.Int64:
                    Assert.Equal(flat[i].GetInt64(), f[i].item<long>());
                    break;
                case ScalarType.Bool:
                    Assert.Equal(flat[i].GetBoolean(), f[i].item<bool>());
                    break;
                default:
                    using (var d = f[i].to(ScalarType.Float64))
                        Assert.Equal(flat[i].GetDouble(), d.item<double>());
                    break;
            }
        }
    }

    private static void Flatten(JsonElement e, List<JsonElement> into)
    {
        if (e.ValueKind == JsonValueKind.Array)
            foreach (var x in e.EnumerateArray()) Flatten(x, into);
        else into.Add(e);
    }

    private static JsonDocument ReadExpected() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir, "expected.json")));

    internal static void DisposeAll(Dictionary<string, Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }

    /// <summary>Live child processes of this test process (Linux /proc); empty elsewhere.</summary>
    private static HashSet<int> ChildProcesses()
    {
        var result = new HashSet<int>();
        if (!Directory.Exists("/proc")) return result;
        int self = Environment.ProcessId;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) == self) result.Add(pid);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return result;
    }
}
