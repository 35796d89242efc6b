using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

/// <summary>`sample` in-process: files written, same arguments → same bytes, bad input → exit 1 with one sentence.</summary>
public sealed class SampleCommandTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model = model.Dir;

    public void Dispose() => _temp.Dispose();

    private static string[] Listing(string dir) =>
        Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(f => $"{Path.GetFileName(f)} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))}").ToArray();

    [Fact]
    public void ARunStoppedPartWayEndsAsAnUninterruptedOneWhenRunAgain()
    {
        string[] Args(string dir, params string[] extra) => ["sample", "-m", _model, "--class", "3,1", "-n", "3", "--seed", "5", "--batch-size", "2", "--scales", "-o", dir, .. extra];
        var whole = _temp.File("whole");
        Assert.Equal(0, CliRun.Of(Args(whole)).ExitCode);

        // A run stopped part-way: two images never written, and the log's last line cut off mid-write.
        var part = _temp.File("part");
        Directory.CreateDirectory(part);
        foreach (var f in Directory.GetFiles(whole)) File.Copy(f, Path.Combine(part, Path.GetFileName(f)));
        File.Delete(Path.Combine(part, "001-class3.png"));
        File.Delete(Path.Combine(part, "004-class1-scales.png"));
        var log = File.ReadAllText(Path.Combine(part, "samples.jsonl"));
        File.WriteAllText(Path.Combine(part, "samples.jsonl"), log[..^20]);
        File.Delete(Path.Combine(part, "grid.png"));

        var again = CliRun.Of(Args(part));
        Assert.Equal(0, again.ExitCode);
        // 6 images: 001 lost its PNG, 004 its strip, 005 its log line; the other 3 are kept.
        Assert.Contains("wrote 3 image(s)", again.Output);
        Assert.Contains("(3 more were already there from an earlier run with the same settings)", again.Output);
        Assert.Equal(Listing(whole), Listing(part));

        // Other settings into the same folder would overwrite the earlier images: refused, before anything is written.
        var before = Listing(part);
        var refused = CliRun.Of(Args(part, "--cfg", "2"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal($"error: {part} holds 6 image(s) of an earlier run with other settings that this run would overwrite; write to another folder, or pass --force to replace them.",
            refused.Error.TrimEnd());
        Assert.Equal(before, Listing(part));
        // With --force they keep nothing, and end as a fresh run with those settings.
        var changed = CliRun.Of(Args(part, "--cfg", "2", "--force"));
        Assert.Contains("wrote 6 image(s)", changed.Output);
        Assert.DoesNotContain("already there", changed.Output);
        var fresh = _temp.File("fresh");
        Assert.Equal(0, CliRun.Of(Args(fresh, "--cfg", "2")).ExitCode);
        Assert.Equal(Listing(fresh), Listing(part));
    }

    /// <summary>
    /// A smaller run with other settings into the same folder overwrites only its own images; the log keeps the lines
    /// of the earlier images it left alone, so they stay described (and a later run of the earlier settings keeps them).
    /// </summary>
    [Fact]
    public void ALaterSmallerRunKeepsTheLinesOfImagesItDidNotOverwrite()
    {
        string[] Args(params string[] extra) => ["sample", "-m", _model, "--class", "2", "--seed", "1", "-o", _temp.File("mixed"), .. extra];
        Assert.Equal(0, CliRun.Of(Args("-n", "4")).ExitCode);
        Assert.Contains("holds 2 image(s) of an earlier run with other settings", CliRun.Of(Args("-n", "2", "--cfg", "0")).Error);
        Assert.Equal(0, CliRun.Of(Args("-n", "2", "--cfg", "0", "--force")).ExitCode);
        var log = File.ReadAllLines(_temp.File("mixed/samples.jsonl")).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!).ToList();
        Assert.Equal([0, 1, 2, 3], log.Select(l => l["index"]!.GetValue<int>()));
        Assert.Equal([0.0, 0.0, 4.0, 4.0], log.Select(l => l["cfg"]!.GetValue<double>()));

        // The first settings again: the two images the smaller run did not touch are kept, the other two sampled anew.
        var again = CliRun.Of(Args("-n", "4", "--force"));
        Assert.Contains("wrote 2 image(s)", again.Output);
        Assert.Contains("(2 more were already there", again.Output);

        // Two classes into one folder, one after the other: each class's rerun still finds its own images.
        string[] ByClass(string c) => ["sample", "-m", _model, "--class", c, "-n", "2", "--seed", "1", "-o", _temp.File("classes")];
        Assert.Equal(0, CliRun.Of(ByClass("1")).ExitCode);
        Assert.Equal(0, CliRun.Of(ByClass("2")).ExitCode);
        Assert.Contains("(2 more were already there", CliRun.Of(ByClass("2")).Output);
    }

    /// <summary>
    /// Earlier images are found by file, not by index: another class's run in between (same indices, other files) does
    /// not hide them, and a half-precision run does not pass for a float32 one.
    /// </summary>
    [Fact]
    public void EarlierImagesAreProtectedWhateverRanInBetween()
    {
        string[] Args(string c, params string[] extra) => ["sample", "-m", _model, "--class", c, "-n", "3", "--seed", "1", "-o", _temp.File("shared"), .. extra];
        Assert.Equal(0, CliRun.Of(Args("0")).ExitCode);
        Assert.Equal(0, CliRun.Of(Args("1")).ExitCode);   // other files: nothing to overwrite
        var refused = CliRun.Of(Args("0", "--cfg", "5"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("holds 3 image(s) of an earlier run with other settings", refused.Error);

        var half = CliRun.Of(Args("0", "--dtype", "bf16"));
        Assert.Equal(1, half.ExitCode);
        Assert.Contains("holds 3 image(s) of an earlier run with other settings", half.Error);
        Assert.Equal(0, CliRun.Of(Args("0", "--dtype", "bf16", "--force")).ExitCode);
        Assert.Contains("\"precision\":\"bf16\"", File.ReadAllText(_temp.File("shared/samples.jsonl")));
        Assert.Contains("(3 more were already there", CliRun.Of(Args("0", "--dtype", "bf16")).Output);
    }

    [Fact]
    public void AnImageOverwrittenByARunThatStoppedBeforeItsLogIsSampledAgain()
    {
        string[] Args(string dir, params string[] extra) => ["sample", "-m", _model, "--class", "2", "-n", "3", "--seed", "1", "-o", dir, .. extra];
        var a = _temp.File("a");
        Assert.Equal(0, CliRun.Of(Args(a)).ExitCode);
        var expected = Listing(a);
        // A run with other settings wrote 001's PNG and stopped before appending its line: the old line still names it.
        var other = _temp.File("other");
        Assert.Equal(0, CliRun.Of(Args(other, "--cfg", "0")).ExitCode);
        File.Copy(Path.Combine(other, "001-class2.png"), Path.Combine(a, "001-class2.png"), overwrite: true);
        Assert.NotEqual(expected, Listing(a));

        var again = CliRun.Of(Args(a));
        Assert.Contains("wrote 1 image(s)", again.Output);
        Assert.Equal(expected, Listing(a));
        // An edit's images are never taken for plain samples.
        var log = File.ReadAllLines(Path.Combine(a, "samples.jsonl"));
        Assert.All(log, l => Assert.Contains("\"edited\":false", l));
    }

    [Fact]
    public void TheGridShowsAtMostGridMaxImages()
    {
        var capped = CliRun.Of("sample", "-m", _model, "-n", "5", "--grid-max", "4", "-o", _temp.File("capped"));
        Assert.Equal(0, capped.ExitCode);
        Assert.Contains("(the first 4 of 5 images)", capped.Output);
        var grid = StbImageSharp.ImageResult.FromMemory(File.ReadAllBytes(Path.Combine(_temp.File("capped"), "grid.png")));
        var full = StbImageSharp.ImageResult.FromMemory(File.ReadAllBytes(Directory.GetFiles(_temp.File("capped"), "000-class*.png").Single()));
        Assert.True(grid.Width < 3 * full.Width, "a 2×2 grid of 4 images, not a 3×3 one of 5");

        var none = CliRun.Of("sample", "-m", _model, "-n", "2", "--grid-max", "0", "-o", _temp.File("none"));
        Assert.Equal(0, none.ExitCode);
        Assert.False(File.Exists(Path.Combine(_temp.File("none"), "grid.png")));
        Assert.Contains("not written: --grid-max 0", none.Output);
    }

    [Fact]
    public void WritesOnePngPerImageAGridALogAndStrips()
    {
        var outDir = _temp.File("out");
        var run = CliRun.Of("sample", "--model", _model, "--class", "3,1", "--class", "4", "--count", "2", "--output", outDir, "--scales");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Error);
        Assert.Contains("wrote 6 image(s) of 8x8", run.Output);
        Assert.Contains("top-k 4", run.Output);   // default for V = 16: round(900·16/4096)
        var files = Directory.GetFiles(outDir).Select(f => Path.GetFileName(f)).Order().ToArray();
        Assert.Equal(
        [
            "000-class3-scales.png", "000-class3.png", "001-class3-scales.png", "001-class3.png",
            "002-class1-scales.png", "002-class1.png", "003-class1-scales.png", "003-class1.png",
            "004-class4-scales.png", "004-class4.png", "005-class4-scales.png", "005-class4.png",
            "grid.png", "samples.jsonl",
        ], files);
        // The grid has one row per class: 3 rows × 2 columns of 8×8 images with 2-pixel gaps.
        using (var grid = VarSharp.Data.ImageIO.Load(Path.Combine(outDir, "grid.png"), 3))
            Assert.Equal(new long[] { 1, 3, 3 * 10 + 2, 2 * 10 + 2 }, grid.shape);
        var log = File.ReadAllLines(Path.Combine(outDir, "samples.jsonl"));
        Assert.Equal(6, log.Length);
        Assert.Contains("\"class\":1", log[2]);
        Assert.Contains("\"seed\":2", log[2]);
    }

    [Fact]
    public void ClassesCanBeNamedAsTheModelNamesThem()
    {
        var named = TinyModels.WriteFolder(_temp.File("named"), editConfig: c =>
        {
            c["classes"] = new System.Text.Json.Nodes.JsonArray("cat", "dog", "Ankle boot", "owl", "fox");
            return c;
        });
        var byName = CliRun.Of("sample", "-m", named, "--class", "ankle BOOT,dog", "--seed", "3", "-o", _temp.File("names"));
        var byId = CliRun.Of("sample", "-m", named, "--class", "2,1", "--seed", "3", "-o", _temp.File("ids"));
        Assert.True(byName.ExitCode == 0, byName.Error);
        Assert.Equal(0, byId.ExitCode);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_temp.File("ids"), "grid.png")), File.ReadAllBytes(Path.Combine(_temp.File("names"), "grid.png")));
        var log = File.ReadAllLines(Path.Combine(_temp.File("names"), "samples.jsonl"));
        Assert.Contains("\"class\":2,\"class_name\":\"Ankle boot\"", log[0]);
        Assert.Contains("\"class\":1,\"class_name\":\"dog\"", log[1]);
    }

    [Fact]
    public void SameArgumentsGiveTheSameBytes()
    {
        string[] Args(string dir) => ["sample", "-m", _model, "-n", "3", "--seed", "5", "--cfg", "1.5", "--top-p", "0.8", "--more-smooth", "-o", dir];
        var a = CliRun.Of(Args(_temp.File("a")));
        var b = CliRun.Of(Args(_temp.File("b")));
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(0, b.ExitCode);
        var names = Directory.GetFiles(_temp.File("a")).Select(f => Path.GetFileName(f)).Order().ToArray();
        Assert.Equal(5, names.Length);   // 3 images (drawn classes), grid, log
        foreach (var name in names)
            Assert.Equal(File.ReadAllBytes(Path.Combine(_temp.File("a"), name)), File.ReadAllBytes(Path.Combine(_temp.File("b"), name)));

        var c = CliRun.Of("sample", "-m", _model, "-n", "3", "--seed", "6", "--cfg", "1.5", "--top-p", "0.8", "--more-smooth", "-o", _temp.File("c"));
        Assert.Equal(0, c.ExitCode);
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(_temp.File("a"), "grid.png")), File.ReadAllBytes(Path.Combine(_temp.File("c"), "grid.png")));
    }

    [Theory]
    [InlineData("class id 9 is unknown: this model has classes 0 to 4 (and -1 or 'uncond' samples unconditionally).", "--class", "9")]
    [InlineData("'x' is neither a class id (0 to 4) nor a class name of this model (class 0, class 1, class 2, class 3, class 4).", "--class", "1,x")]
    [InlineData("--class has an empty entry; give class ids or names separated by commas.", "--class", "1,,2")]
    [InlineData("cfg (guidance scale) must be a finite number ≥ 0, found -1.", "--cfg", "-1")]
    [InlineData("top-k must be at most the vocabulary size 16 (or 0 for off), found 17.", "--top-k", "17")]
    [InlineData("top-k must be 0 (off) or a positive number of tokens to keep, found -3.", "--top-k", "-3")]
    [InlineData("top-p must be in [0, 1] (0 is off), found 1.5.", "--top-p", "1.5")]
    [InlineData("count must be positive, found 0.", "--count", "0")]
    [InlineData("--threads must be at least 1 but is 0.", "--threads", "0")]
    [InlineData("--grid-max must be 0 (no grid) or more but is -1.", "--grid-max", "-1")]
    [InlineData("the request asks for 3000000000 images, more than the 10000000 one request may; split it into several.", "--class", "0,1", "--count", "1500000000")]
    public void BadInputExitsOneWithASentence(string expected, params string[] extra)
    {
        var outDir = _temp.File("bad");
        var run = CliRun.Of(["sample", "-m", _model, "-o", outDir, .. extra]);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: {expected}", run.Error.TrimEnd());
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void EditKeepsTheImageOutsideTheBoxAndIsReproducible()
    {
        var input = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        string[] Args(string dir) => ["sample", "-m", _model, "--edit", input, "--box", "2,2,6,6", "--class", "1", "--count", "2", "--seed", "4", "-o", dir];
        var run = CliRun.Of(Args(_temp.File("a")));
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.True(File.Exists(Path.Combine(_temp.File("a"), "000-class1.png")) && File.Exists(Path.Combine(_temp.File("a"), "001-class1.png")));
        Assert.Equal(0, CliRun.Of(Args(_temp.File("b"))).ExitCode);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_temp.File("a"), "grid.png")), File.ReadAllBytes(Path.Combine(_temp.File("b"), "grid.png")));
        // The log says what each image was edited from.
        var line = System.Text.Json.Nodes.JsonNode.Parse(File.ReadLines(Path.Combine(_temp.File("a"), "samples.jsonl")).First())!;
        Assert.True(line["edited"]!.GetValue<bool>());
        Assert.Equal("2,2,6,6", line["edit"]!["box"]!.GetValue<string>());
        Assert.Equal(VarSharp.Checkpoints.FileDigest.Sha256(input), line["edit"]!["image_sha256"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("--box, --outpaint, --known-threshold and --resize describe an edit; give the image to edit with --edit IMAGE.", "--box", "1,1,4,4")]
    [InlineData("--edit needs the region to generate: --box X0,Y0,X1,Y1 (pixels, X1 and Y1 exclusive).", "--edit", "IMAGE")]
    [InlineData("--box takes four integers X0,Y0,X1,Y1 but got '1,2,3'.", "--edit", "IMAGE", "--box", "1,2,3")]
    [InlineData("the box 0,0,9,4 must satisfy 0 ≤ x0 < x1 ≤ 8 and 0 ≤ y0 < y1 ≤ 8 (pixels of the 8×8 image).", "--edit", "IMAGE", "--box", "0,0,9,4")]
    [InlineData("the edit keeps every pixel, so there is nothing to generate.", "--edit", "IMAGE", "--box", "0,0,8,8", "--outpaint")]
    public void BadEditsExitOneWithASentence(string expected, params string[] extra)
    {
        var input = TinyModelFolder.WritePng(_temp.File("in.png"), 8, 3);
        var run = CliRun.Of(["sample", "-m", _model, "--class", "1", "-o", _temp.File("x"), .. extra.Select(e => e == "IMAGE" ? input : e)]);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: {expected}", run.Error.TrimEnd());
        Assert.False(Directory.Exists(_temp.File("x")));
    }

    [Fact]
    public void AnOutputThatIsAFileIsRefusedAndLeftAlone()
    {
        var file = _temp.File("taken");
        File.WriteAllText(file, "mine");
        var run = CliRun.Of("sample", "-m", _model, "--class", "1", "-o", file);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: {Path.GetFullPath(file)} is a file; give a folder for the images (-o DIR).", run.Error.TrimEnd());
        Assert.Equal("mine", File.ReadAllText(file));
    }

    [Fact]
    public void WithoutAModelTheBundledOneSamples()
    {
        // The test binaries live inside the repository, so models/fashion-var is found above them, as for ./varsharp.
        var run = CliRun.Of("sample", "--class", "Bag", "--seed", "2", "-o", _temp.File("bundled"));
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("of 32x32", run.Output);
        Assert.Contains("\"class_name\":\"Bag\"", File.ReadAllText(Path.Combine(_temp.File("bundled"), "samples.jsonl")));
    }

    [Fact]
    public void AMissingOrAmbiguousModelExitsOne()
    {
        var half = CliRun.Of("sample", "--config", "c.json", "-o", _temp.File("x"));
        Assert.Equal(1, half.ExitCode);
        Assert.Contains("Name a model with --model DIR, or with both --config FILE and --weights FILE.", half.Error);

        var both = CliRun.Of("sample", "-m", _model, "--config", "c.json", "-o", _temp.File("x"));
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("either --model or --config", both.Error);

        var absent = CliRun.Of("sample", "-m", _temp.File("nope"), "-o", _temp.File("x"));
        Assert.Equal(1, absent.ExitCode);
        Assert.Contains("does not exist", absent.Error);
    }
}
