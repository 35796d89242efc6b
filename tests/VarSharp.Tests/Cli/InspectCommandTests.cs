using System.Text.Json;
using TorchSharp;
using VarSharp.Checkpoints;
using VarSharp.Tests.Checkpoints;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

public class InspectCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void TableListsTensorsMetadataAndDigest()
    {
        var path = TinyFile();

        var run = CliRun.Of("inspect", path);

        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Error);
        Assert.Contains("blocks[0].weight", run.Output);
        Assert.Contains("counts", run.Output);
        Assert.Contains("[2, 3]", run.Output);
        Assert.Contains("BF16", run.Output);
        Assert.Contains("origin: unit test", run.Output);
        Assert.Contains(FileDigest.Sha256(path), run.Output);
    }

    [Fact]
    public void NoDigestSkipsTheHash()
    {
        var path = TinyFile();

        var run = CliRun.Of("inspect", path, "--no-digest");

        Assert.Equal(0, run.ExitCode);
        Assert.DoesNotContain(FileDigest.Sha256(path), run.Output);
        Assert.Contains("skipped", run.Output);
    }

    [Fact]
    public void JsonIsMachineReadable()
    {
        var path = TinyFile();

        var run = CliRun.Of("inspect", "--json", path);

        Assert.Equal(0, run.ExitCode);
        using var doc = JsonDocument.Parse(run.Output);
        var root = doc.RootElement;
        Assert.Equal(FileDigest.Sha256(path), root.GetProperty("sha256").GetString());
        Assert.Equal(2, root.GetProperty("tensor_count").GetInt32());
        Assert.Equal(6 * 4 + 3 * 2, root.GetProperty("total_bytes").GetInt64());
        Assert.Equal("unit test", root.GetProperty("metadata").GetProperty("origin").GetString());
        var first = root.GetProperty("tensors")[0];
        Assert.Equal("blocks[0].weight", first.GetProperty("name").GetString());
        Assert.Equal([2L, 3L], first.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
    }

    [Fact]
    public void CorruptFileExitsOneWithTheValidationSentence()
    {
        var path = RawSafeTensorsFile.Write(_temp.File("corrupt.safetensors"),
            """{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}""", 12);

        var run = CliRun.Of("inspect", path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("", run.Output);
        Assert.StartsWith($"error: {path}: expected tensor 'w'", run.Error);
        Assert.Single(run.Error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void MissingFileExitsOne()
    {
        var run = CliRun.Of("inspect", _temp.File("absent.safetensors"));

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("error: ", run.Error);
        Assert.Contains("absent.safetensors", run.Error);
    }

    [Fact]
    public void DirectoryExitsOneSayingSo()
    {
        var run = CliRun.Of("inspect", _temp.Path);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("found a directory", run.Error);
    }

    [Fact]
    public void MissingArgumentIsAUsageError()
    {
        var run = CliRun.Of("inspect");

        Assert.Equal(1, run.ExitCode);
        Assert.NotEqual("", run.Error);
    }

    [Fact]
    public void HelpNamesTheVerb()
    {
        var run = CliRun.Of("--help");

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("inspect", run.Output);
        Assert.Contains("varsharp", run.Output);
    }

    private string TinyFile()
    {
        using var weight = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var counts = torch.ones(3, dtype: torch.bfloat16);
        var path = _temp.File("tiny.safetensors");
        SafeTensors.Save(path, [new("blocks[0].weight", weight), new("counts", counts)],
            new Dictionary<string, string> { ["origin"] = "unit test" });
        return path;
    }
}
