using System.Net;
using VarSharp.Data;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Web;

/// <summary>In- and out-painting through the API: the library's bytes, the echo of what was asked, and every mistake a 400.</summary>
public sealed class EditApiTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly VarServerFactory _server = VarServerFactory.ForModel(model.Dir, o => o with { MaxCount = 6 });
    private readonly TempFolder _temp = new();

    public void Dispose()
    {
        _server.Dispose();
        _temp.Dispose();
    }

    /// <summary>A small grayscale PNG whose header declares 30000×30000 pixels (decoding it would allocate 900 MB).</summary>
    private string BombPng()
    {
        var path = TinyModelFolder.WritePng(_temp.File("bomb.png"), 8, 1);
        VarSharp.Tests.Data.ImageFolderDatasetTests.ClaimSize(path, 30000, 30000);
        return Convert.ToBase64String(File.ReadAllBytes(path));
    }

    private string Base64Png(int size) => Convert.ToBase64String(File.ReadAllBytes(TinyModelFolder.WritePng(_temp.File($"in{size}.png"), size, 3)));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnEditAnswersTheLibrarysImagesAndEchoesTheBox(bool outpaint)
    {
        var image = Base64Png(8);
        var body = $$$"""{"class": 2, "count": 2, "seed": 4, "edit": {"image": "{{{image}}}", "box": [2, 2, 6, 6], "outpaint": {{{(outpaint ? "true" : "false")}}}}}""";
        using var client = _server.CreateClient();
        using var response = await client.Generate(body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await response.ReadJson();
        var edit = json.GetProperty("params").GetProperty("edit");
        Assert.Equal([2, 2, 6, 6], edit.Get<int[]>("box")!);
        Assert.Equal(outpaint, edit.GetProperty("outpaint").GetBoolean());
        Assert.Equal(0.5, edit.GetProperty("known_threshold").GetDouble());
        var pngs = json.GetProperty("images").EnumerateArray().Select(i => i.Png()).ToList();

        using var pipe = VarPipeline.Load(model.Dir);
        using var source = ImageIO.Load(_temp.File("in8.png"), 3);
        var expected = pipe.Generate(pipe.DefaultOptions() with
        {
            Classes = [2], Count = 2, Seed = 4, Edit = ImageEdit.Box(source, 2, 2, 6, 6, outpaint),
        });
        Assert.Equal(expected.Select(i => i.Png), pngs);

        // The same image without the edit is a different image: the edit really conditions the sampler.
        using var plain = await client.Generate("""{"class": 2, "count": 2, "seed": 4}""");
        var plainPngs = (await plain.ReadJson()).GetProperty("images").EnumerateArray().Select(i => i.Png()).ToList();
        Assert.NotEqual(plainPngs, pngs);
    }

    [Fact]
    public async Task AnEditStreamsItsScalesToo()
    {
        var body = $$$"""{"class": 1, "seed": 3, "edit": {"image": "{{{Base64Png(8)}}}", "box": [0, 0, 4, 8]}}""";
        using var client = _server.CreateClient();
        using var response = await client.PostAsync("/v1/generate/stream", Api.Json(body));
        var events = await response.ReadAllEvents();
        Assert.Equal("start", events[0].Event);
        Assert.Equal("done", events[^1].Event);
        Assert.Equal([0, 0, 4, 8], events[^1].Data.GetProperty("params").GetProperty("edit").Get<int[]>("box")!);
        Assert.True(events.Count(e => e.Event == "scale") >= 2);
    }

    [Theory]
    [InlineData("\"x\"", "'edit' must be an object such as {\"image\": \"<base64 PNG>\", \"box\": [8, 8, 24, 24]}.")]
    [InlineData("""{"box": [0, 0, 4, 4]}""", "'edit.image' is missing: give the image to edit as base64 PNG or JPEG.")]
    [InlineData("""{"image": 5, "box": [0, 0, 4, 4]}""", "'edit.image' must be a string, found a number.")]
    [InlineData("""{"image": "%%%", "box": [0, 0, 4, 4]}""", "'edit.image' is not base64 text.")]
    [InlineData("""{"image": "aGVsbG8=", "box": [0, 0, 4, 4]}""", "'edit.image' is not a readable PNG or JPEG image")]
    [InlineData("""{"image": "IMG16", "box": [0, 0, 4, 4]}""", "'edit.image' is 16×16 but model 'tiny' makes 8×8 images.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4]}""", "'edit.box' must be an array of four integers [x0, y0, x1, y1], the pixels to regenerate.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 4.5]}""", "'edit.box[3]' must be an integer, found 4.5.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 9, 4]}""", "the box 0,0,9,4 must satisfy 0 ≤ x0 < x1 ≤ 8 and 0 ≤ y0 < y1 ≤ 8 (pixels of the 8×8 image).")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 8, 8], "outpaint": true}""", "the edit keeps every pixel, so there is nothing to generate.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 4], "known_threshold": 0}""", "the known threshold must be in (0, 1], found 0.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 4], "outpaint": "yes"}""", "'edit.outpaint' must be true or false, found a string.")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 4], "mask": 1}""", "unknown field 'edit.mask'; the edit fields are image, box, outpaint, known_threshold.")]
    [InlineData("""{"image": "IMG8", "image": "IMG8", "box": [0, 0, 4, 4]}""", "the field 'edit.image' is given twice; give each field once.")]
    [InlineData("""{"image": "\ud800", "box": [0, 0, 4, 4]}""", "the request body holds a string that is not valid Unicode")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 4], "known_threshold": 1e400}""", "the known threshold must be in (0, 1]")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 4, 1e400]}""", "'edit.box[3]' is out of range")]
    [InlineData("""{"image": "IMG8", "box": [0, 0, 1, 1]}""", "the region to generate covers less than 0.5 of every token's cell")]
    [InlineData("""{"image": "BOMB", "box": [0, 0, 4, 4]}""", "'edit.image' is 30000×30000 but model 'tiny' makes 8×8 images.")]
    public async Task EveryMistakeIsA400WithOneSentence(string edit, string expected)
    {
        var body = $$$"""{"class": 1, "edit": {{{edit.Replace("IMG16", Base64Png(16)).Replace("IMG8", Base64Png(8)).Replace("BOMB", BombPng())}}}}""";
        using var client = _server.CreateClient();
        using var response = await client.Generate(body);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.StartsWith(expected, (await response.ReadJson()).GetProperty("error").GetString());
        Assert.Equal(0, _server.Queue.Stats().Accepted);
    }

    [Fact]
    public async Task TheBodyCapLeavesRoomForAnImageOfTheModelsSize()
    {
        using var client = _server.CreateClient();
        // 64 KiB + 8 bytes per pixel of the 8×8 model (a canvas's RGBA PNG in base64 fits): a body just over it is
        // refused, one just under is read (and refused for its content).
        int cap = 64 * 1024 + 8 * 8 * 8;
        using (var over = await client.Generate("{\"class\": 1, \"pad\": \"" + new string('x', cap) + "\"}"))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, over.StatusCode);
            Assert.Equal($"the request body is larger than {cap / 1024} KiB.", (await over.ReadJson()).GetProperty("error").GetString());
        }
        using var under = await client.Generate("{\"class\": 1, \"pad\": \"" + new string('x', cap - 40) + "\"}");
        Assert.Equal(HttpStatusCode.BadRequest, under.StatusCode);
        Assert.StartsWith("unknown field 'pad'", (await under.ReadJson()).GetProperty("error").GetString());
    }
}
