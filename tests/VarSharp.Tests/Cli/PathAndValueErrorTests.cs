using VarSharp.Config;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

/// <summary>
/// Paths of the wrong kind, outputs that cannot or must not be written, and values no model can use: each is one
/// sentence and exit 1 (a sweep of ~400 bad command lines found these giving exit 2, stack traces or silent acceptance).
/// </summary>
public sealed class PathAndValueErrorTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private string AFile()
    {
        var f = _temp.File("plain.txt");
        File.WriteAllText(f, "not a folder");
        return f;
    }

    private static void OneSentence(CliRun run, string expected)
    {
        Assert.Equal(1, run.ExitCode);
        var line = Assert.Single(run.Error.TrimEnd().Split('\n'));
        Assert.Contains(expected, line);
        Assert.DoesNotContain("unexpected", line);
    }

    [Fact]
    public void AFileWhereAFolderIsExpectedAndTheReverseAreNamedForWhatTheyAre()
    {
        OneSentence(CliRun.Of("sample", "-m", AFile(), "-o", _temp.File("o")), "is a file, not a folder.");
        var input = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        OneSentence(CliRun.Of("reconstruct", "-m", model.Dir, "-i", _temp.Path, "-o", _temp.File("r.png")), "is a folder, not a file.");
        Assert.True(File.Exists(input));
    }

    [Fact]
    public void EmptyPathsAreUserErrors()
    {
        OneSentence(CliRun.Of("inspect", ""), "an empty path was given where a file or folder is expected.");
        OneSentence(CliRun.Of("sample", "-m", "", "-o", _temp.File("o")), "is an empty path; name a folder.");
        OneSentence(CliRun.Of("train-tokenizer", "--out", _temp.File("run"), "--data", ""), "--data names no path");
    }

    [Fact]
    public void OutputsUnderSystemFoldersOrUnderAFileAreRefused()
    {
        var input = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        OneSentence(CliRun.Of("tokenize", "-m", model.Dir, "-i", input, "-o", "/dev/full"), "/dev/full is under /dev, where devices and kernel files live");
        OneSentence(CliRun.Of("reconstruct", "-m", model.Dir, "-i", input, "-o", "/proc/x.png"), "is under /proc");
        OneSentence(CliRun.Of("reconstruct", "-m", model.Dir, "-i", input, "-o", Path.Combine(AFile(), "sub", "r.png")), "plain.txt is a file, not a folder.");
    }

    [Fact]
    public void MalformedNumbersAreNamedInWordsAUserKnows()
    {
        var run = CliRun.Of("sample", "-m", model.Dir, "--cfg", "abc", "-o", _temp.File("o"));
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("error: Cannot parse argument 'abc' for option '--cfg' as a number.", run.Error);
        Assert.DoesNotContain("System.", run.Error);
        OneSentence(CliRun.Of("bench", "-m", model.Dir, "--batch-sizes", "1,,2"), "--batch-sizes takes comma-separated integers");
        OneSentence(CliRun.Of("train-tokenizer", "--out", _temp.File("run"), "--stop-after", "-1"), "--stop-after must be a step of at least 1, found -1.");
        Assert.False(Directory.Exists(_temp.File("run")));
    }

    [Fact]
    public void ATokenCacheThatIsAFileIsRefusedBeforeAnyWork()
    {
        var tokenizer = TinyModelFolder.WriteTokenizer(_temp.File("tok"), TinyConfigs.VqVae());
        var data = TinyData.WriteIdxFolder(_temp.File("data"));
        var run = _temp.File("run");
        OneSentence(CliRun.Of("train", "--tokenizer", tokenizer, "--data", data, "--out", run, "--token-cache", AFile()), "is a file, not a folder.");
        Assert.False(Directory.Exists(run));
    }

    [Theory]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NaN)]
    [InlineData(-1.5)]
    public void AQuantResiThatIsNoMixingRatioIsRefused(double quantResi)
    {
        var e = Assert.Throws<VarSharpException>(() => (TinyConfigs.VqVae() with { QuantResi = quantResi }).Validate());
        Assert.Contains("quant_resi must be a finite number in [-1, 1]", e.Message);
        (TinyConfigs.VqVae() with { QuantResi = -0.5 }).Validate();   // the reference uses |quant_resi|
    }

    [Theory]
    [InlineData("http://256.1.1.1:5080", "'256.1.1.1' in 'http://256.1.1.1:5080' is not an IP address or localhost")]
    [InlineData("http://foo.invalid:5080", "'foo.invalid' in 'http://foo.invalid:5080' is not an IP address or localhost")]
    public void AServeHostThatWouldMeanEveryInterfaceIsRefused(string urls, string expected) =>
        OneSentence(CliRun.Of("serve", "-m", "tiny=" + model.Dir, "--urls", urls), expected);

    [Fact]
    public void AnEditTooSmallToChangeAnyTokenIsRefused()
    {
        var input = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        OneSentence(CliRun.Of("sample", "-m", model.Dir, "--edit", input, "--box", "0,0,1,1", "--class", "1", "-o", _temp.File("e")),
            "so every token stays the image's");
        Assert.Equal(0, CliRun.Of("sample", "-m", model.Dir, "--edit", input, "--box", "0,0,1,1", "--known-threshold", "1", "--class", "1", "-o", _temp.File("e")).ExitCode);
    }
}
