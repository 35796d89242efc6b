using System.Text.Json;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

public class TokenizerCommandTests : IDisposable
{
    private readonly TempFolder temp = new();
    private readonly string model;

    public TokenizerCommandTests() => model = TinyModelFolder.WriteTokenizer(temp.File("model"), TinyConfigs.VqVae());

    public void Dispose() => temp.Dispose();

    [Fact]
    public void ReconstructWritesTheImageAndTheScaleStrip()
    {
        var input = TinyModelFolder.WritePng(temp.File("in.png"), 8, 3);
        var run = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("out.png"), "--scales");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("PSNR", run.Output);
        using var rec = ImageIO.Load(temp.File("out.png"), 3);
        Assert.Equal(new long[] { 1, 3, 8, 8 }, rec.shape);
        using var strip = ImageIO.Load(temp.File("out-scales.png"), 3);
        Assert.Equal(2 + 5 * 10, strip.shape[3]); // input + 4 scales, 8 px each with 2 px padding
    }

    [Fact]
    public void GrayscaleImagesFeedAnRgbTokenizer()
    {
        var input = TinyModelFolder.WritePng(temp.File("gray.png"), 8, 1);
        var run = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("out.png"));
        Assert.True(run.ExitCode == 0, run.Error);
    }

    [Fact]
    public void WrongSizeImageIsOneSentenceAndExitOne()
    {
        var input = TinyModelFolder.WritePng(temp.File("big.png"), 12, 3);
        var run = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("out.png"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("big.png is 12×12 but the model takes 8×8; pass --resize to fit it", run.Error);
        Assert.False(File.Exists(temp.File("out.png")));
    }

    [Fact]
    public void ResizeFitsAnImageOfAnotherSize()
    {
        // 16×10, not square: the shorter side becomes 8 (so 13×8 after Lanczos), then the center 8×8 is kept.
        var pixels = Enumerable.Range(0, 16 * 10 * 3).Select(i => (byte)(i * 37 % 251)).ToArray();
        var input = temp.File("wide.png");
        File.WriteAllBytes(input, VarSharp.Data.ImageIO.EncodePng(pixels, 3, 10, 16));
        var run = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("fitted.png"), "--resize");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("resized " + input + " from 16×10 to 8×8", run.Output);
        var (fitted, w, h) = VarSharp.Data.ImageIO.LoadFitted(input, 3, 8);
        using (fitted)
        {
            Assert.Equal((16, 10), (w, h));
            Assert.Equal([1L, 3, 8, 8], fitted.shape);
        }
        var tokens = CliRun.Of("tokenize", "--model", model, "-i", input, "--resize");
        Assert.Equal(0, tokens.ExitCode);
    }

    [Fact]
    public void NonImageFileIsRefused()
    {
        File.WriteAllText(temp.File("notes.png"), "this is text, not a picture");
        var run = CliRun.Of("tokenize", "--model", model, "-i", temp.File("notes.png"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("is not a readable PNG or JPEG image", run.Error);
    }

    [Fact]
    public void ATruncatedImageIsRefusedWithAReadableReason()
    {
        var good = File.ReadAllBytes(TinyModelFolder.WritePng(temp.File("in.png"), 8, 3));
        File.WriteAllBytes(temp.File("cut.png"), good.AsSpan(0, 60).ToArray());
        var run = CliRun.Of("reconstruct", "--model", model, "-i", temp.File("cut.png"), "-o", temp.File("out.png"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("is not a readable PNG or JPEG image (", run.Error);
        Assert.DoesNotContain(run.Error.TrimEnd(), char.IsControl);
        Assert.DoesNotContain("()", run.Error);
    }

    [Fact]
    public void OutputsThatCannotBeWrittenAreUserErrorsAndMissingFoldersAreCreated()
    {
        var input = TinyModelFolder.WritePng(temp.File("in.png"), 8, 3);
        var intoFolder = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.Path);
        Assert.Equal(1, intoFolder.ExitCode);
        Assert.Contains("is a folder; give the name of the file to write.", intoFolder.Error);

        File.WriteAllText(temp.File("plain"), "x");
        var underFile = CliRun.Of("tokenize", "--model", model, "-i", input, "-o", Path.Combine(temp.File("plain"), "t.json"));
        Assert.Equal(1, underFile.ExitCode);
        Assert.Contains("is a file, not a folder", underFile.Error);
        Assert.DoesNotContain(".tmp", underFile.Error);

        var nested = Path.Combine(temp.Path, "new", "dir", "t.json");
        Assert.Equal(0, CliRun.Of("tokenize", "--model", model, "-i", input, "-o", nested).ExitCode);
        Assert.True(File.Exists(nested));
    }

    /// <summary>An output never replaces its input, a bundle's file or an existing file without --force.</summary>
    [Fact]
    public void AnOutputThatWouldReplaceAnInputABundleFileOrAnExistingFileIsRefused()
    {
        var input = TinyModelFolder.WritePng(temp.File("keep.png"), 8, 3);
        var original = File.ReadAllBytes(input);
        foreach (var verb in new[] { "reconstruct", "tokenize" })
        {
            var self = CliRun.Of(verb, "--model", model, "-i", input, "-o", input, "--force");
            Assert.Equal(1, self.ExitCode);
            Assert.Equal($"error: The output {input} is also an input of this command; write it elsewhere.", self.Error.TrimEnd());
        }
        Assert.Equal(original, File.ReadAllBytes(input));

        var bundle = TinyModels.WriteBundle(temp.File("bundle"));
        var intoBundle = CliRun.Of("reconstruct", "--model", bundle, "-i", input, "-o", Path.Combine(bundle, "rec.png"));
        Assert.Equal(1, intoBundle.ExitCode);
        Assert.Contains("is inside the bundle", intoBundle.Error);
        VarSharp.Checkpoints.ModelBundle.Verify(bundle);

        var first = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("once.png"));
        Assert.Equal(0, first.ExitCode);
        var second = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("once.png"), "--scales");
        Assert.Equal(1, second.ExitCode);
        Assert.Equal($"error: {temp.File("once.png")} already exists; pass --force to replace it.", second.Error.TrimEnd());
        Assert.False(File.Exists(temp.File("once-scales.png")));   // nothing written before the refusal
        Assert.Equal(0, CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("once.png"), "--scales", "--force").ExitCode);
    }

    [Fact]
    public void WeightsThatDoNotMatchTheConfigAreRefused()
    {
        var other = TinyModelFolder.WriteTokenizer(temp.File("other"), TinyConfigs.VqVae() with { VocabSize = 32 });
        File.Copy(Path.Combine(other, "config.json"), Path.Combine(model, "config.json"), overwrite: true);
        var input = TinyModelFolder.WritePng(temp.File("in.png"), 8, 3);
        var run = CliRun.Of("reconstruct", "--model", model, "-i", input, "-o", temp.File("out.png"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("quantize.embedding.weight", run.Error);
        Assert.Single(run.Error.Trim().Split('\n'));
    }

    [Fact]
    public void TokenizePrintsAndSavesThePyramid()
    {
        var input = TinyModelFolder.WritePng(temp.File("in.png"), 8, 3);
        var printed = CliRun.Of("tokenize", "--model", model, "-i", input);
        Assert.True(printed.ExitCode == 0, printed.Error);
        Assert.Contains("scale 3 (4x4):", printed.Output);
        var saved = CliRun.Of("tokenize", "--model", model, "-i", input, "-o", temp.File("tokens.json"));
        Assert.True(saved.ExitCode == 0, saved.Error);
        using var doc = JsonDocument.Parse(File.ReadAllText(temp.File("tokens.json")));
        var scales = doc.RootElement.GetProperty("scales").EnumerateArray().Select(s => s.GetArrayLength()).ToArray();
        Assert.Equal([1, 4, 9, 16], scales);
        Assert.All(doc.RootElement.GetProperty("scales").EnumerateArray().SelectMany(s => s.EnumerateArray()),
            t => Assert.InRange(t.GetInt64(), 0, 15));
    }

    [Fact]
    public void MissingModelFolderIsAClearError()
    {
        var run = CliRun.Of("tokenize", "--model", temp.File("nowhere"), "-i", temp.File("x.png"));
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("does not exist", run.Error);
    }

    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void GoldenVerbPassesOnEveryCase(string caseName)
    {
        var run = CliRun.Of("golden", Path.Combine(SharedData.GoldenDir, caseName));
        Assert.True(run.ExitCode == 0, run.Output + run.Error);
        Assert.Contains("PASS", run.Output);
    }

    /// <summary>A case whose config no longer describes the transformer leaves its transformer tensors uncomputed: that is a failure, not a pass.</summary>
    [GoldenTheory]
    [MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]
    public void GoldenVerbFailsWhenTensorsOfTheCaseAreNotRecomputed(string caseName)
    {
        var copy = temp.File(caseName);
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.EnumerateFiles(Path.Combine(SharedData.GoldenDir, caseName)))
            File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(copy, "config.json")))!.AsObject();
        Assert.True(config.Remove("var"), "the golden config has a 'var' block");
        File.WriteAllText(Path.Combine(copy, "config.json"), config.ToJsonString());

        var run = CliRun.Of("golden", copy);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("not recomputed (NotImplemented)", run.Output);
        Assert.DoesNotContain("PASS", run.Output);
    }

    [Fact]
    public void GoldenVerbFailsOnAFolderWithoutVectors()
    {
        var run = CliRun.Of("golden", model);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("vectors.safetensors", run.Error);
    }
}
