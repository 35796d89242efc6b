using System.Net;
using System.Text.Json;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Web;

/// <summary>The HTTP API over a tiny model: formats, equality with the library, validation, the page and OpenAPI.</summary>
public sealed class ApiTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly VarServerFactory _server = VarServerFactory.ForModel(model.Dir, o => o with { MaxCount = 6 });

    public void Dispose() => _server.Dispose();

    [Fact]
    public async Task GenerateAnswersBase64PngsWithTheirParametersAndTheLibrarysBytes()
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate("""{"class": 3, "count": 2, "cfg": 2.5, "top_k": 5, "top_p": 0.9, "seed": 11}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        var body = await response.ReadJson();

        var p = body.GetProperty("params");
        Assert.Equal("tiny", p.GetProperty("model").GetString());
        Assert.Equal(3, p.GetProperty("class").GetInt32());
        Assert.Equal("class 3", p.GetProperty("class_name").GetString());
        Assert.Equal((2, 2.5, 5, 0.9, 11L), (p.GetProperty("count").GetInt32(), p.GetProperty("cfg").GetDouble(),
            p.GetProperty("top_k").GetInt32(), p.GetProperty("top_p").GetDouble(), p.GetProperty("seed").GetInt64()));

        var images = body.GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(2, images.Count);
        Assert.Equal([0, 1], images.Select(i => i.GetProperty("index").GetInt32()));
        Assert.Equal([11L, 12L], images.Select(i => i.GetProperty("seed").GetInt64()));
        Assert.All(images, i => Assert.Equal((3, 8, 8, 3), (i.GetProperty("class").GetInt32(), i.GetProperty("width").GetInt32(),
            i.GetProperty("height").GetInt32(), i.GetProperty("channels").GetInt32())));
        Assert.True(body.GetProperty("timing").GetProperty("batch_images").GetInt32() >= 2);

        // The same request through the library gives the same bytes.
        using var pipe = VarPipeline.Load(model.Dir);
        var expected = pipe.Generate(new SampleOptions { Classes = [3], Count = 2, Cfg = 2.5, TopK = 5, TopP = 0.9, Seed = 11 });
        Assert.Equal(expected.Select(e => e.Png), images.Select(i => i.Png()));
    }

    [Fact]
    public async Task ClassMinusOneOrUncondSamplesUnconditionally()
    {
        using var client = _server.CreateClient();
        using var byId = await client.Generate("""{"class": -1, "seed": 2, "cfg": 3}""");
        using var byName = await client.Generate("""{"class": "uncond", "seed": 2, "cfg": 3}""");
        var a = await byId.ReadJson();
        var b = await byName.ReadJson();
        Assert.Equal(5, a.GetProperty("params").GetProperty("class").GetInt32());
        Assert.Equal("unconditional", a.GetProperty("params").GetProperty("class_name").GetString());
        Assert.Equal(a.GetProperty("images")[0].Png(), b.GetProperty("images")[0].Png());
        // The reported id is accepted back (the page's "reuse" resends it).
        using var again = await client.Generate("""{"class": 5, "seed": 2, "cfg": 3}""");
        Assert.Equal(a.GetProperty("images")[0].Png(), (await again.ReadJson()).GetProperty("images")[0].Png());
        // The null class has no guidance to give (conditional and unconditional logits are the same): cfg changes nothing.
        using var noCfg = await client.Generate("""{"class": -1, "seed": 2, "cfg": 0}""");
        Assert.Equal(a.GetProperty("images")[0].Png(), (await noCfg.ReadJson()).GetProperty("images")[0].Png());
    }

    [Fact]
    public async Task DefaultsAreFilledInAndAnOmittedClassIsDrawn()
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate("""{"seed": 4}""");
        var body = await response.ReadJson();
        var p = body.GetProperty("params");
        Assert.Equal(JsonValueKind.Null, p.TryGetProperty("class", out var c) ? c.ValueKind : JsonValueKind.Null);
        Assert.Equal((1, 4.0, 4, 0.95), (p.GetProperty("count").GetInt32(), p.GetProperty("cfg").GetDouble(),
            p.GetProperty("top_k").GetInt32(), p.GetProperty("top_p").GetDouble()));
        var image = body.GetProperty("images")[0];
        using var pipe = VarPipeline.Load(model.Dir);
        var expected = pipe.Generate(new SampleOptions { Count = 1, Seed = 4 })[0];
        Assert.Equal(expected.Class, image.GetProperty("class").GetInt32());
        Assert.Equal(expected.Png, image.Png());
    }

    [Fact]
    public async Task ModelsHealthAndOpenApiDescribeTheServer()
    {
        using var client = _server.CreateClient();
        var models = await (await client.GetAsync("/v1/models")).ReadJson();
        Assert.Equal("tiny", models.GetProperty("default_model").GetString());
        var m = models.GetProperty("models")[0];
        Assert.Equal(("tiny", 8, 5, 16), (m.GetProperty("name").GetString(), m.GetProperty("image_size").GetInt32(),
            m.GetProperty("num_classes").GetInt32(), m.GetProperty("vocab_size").GetInt32()));
        Assert.Equal(["class 0", "class 1", "class 2", "class 3", "class 4"], m.Get<string[]>("class_names")!);
        Assert.Equal([1, 2, 3, 4], m.Get<int[]>("patch_nums")!);
        Assert.Equal(4, m.GetProperty("defaults").GetProperty("top_k").GetInt32());
        Assert.Equal(6, m.GetProperty("max_count").GetInt32());
        Assert.Equal("none", m.GetProperty("integrity").GetProperty("check").GetString());   // a plain folder
        Assert.DoesNotContain(model.Dir, models.GetRawText(), StringComparison.Ordinal);

        var health = await (await client.GetAsync("/healthz")).ReadJson();
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(0, health.GetProperty("queue").GetProperty("waiting").GetInt32());

        var openapi = await (await client.GetAsync("/openapi/v1.json")).ReadJson();
        var paths = openapi.GetProperty("paths");
        foreach (var path in new[] { "/v1/generate", "/v1/generate/stream", "/v1/models", "/healthz" })
            Assert.True(paths.TryGetProperty(path, out _), $"OpenAPI lacks {path}");
        var body = paths.GetProperty("/v1/generate").GetProperty("post").GetProperty("requestBody")
            .GetProperty("content").GetProperty("application/json").GetProperty("schema");
        // The description says what the server accepts: JSON numbers (not digit strings), class as id or name, no other fields.
        var fields = body.GetProperty("properties");
        Assert.Equal("integer", fields.GetProperty("top_k").GetProperty("type").GetString());
        Assert.Equal("number", fields.GetProperty("cfg").GetProperty("type").GetString());
        Assert.Equal(["integer", "string"], fields.GetProperty("class").GetProperty("type").EnumerateArray().Select(t => t.GetString()));
        Assert.False(fields.GetProperty("seed").TryGetProperty("pattern", out _));
        Assert.False(body.GetProperty("additionalProperties").GetBoolean());
    }

    [Fact]
    public async Task ThePageAndItsAssetsAreServedFromTheAssemblyWithAStrictPolicy()
    {
        using var client = _server.CreateClient();
        using var page = await client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("app.js", html, StringComparison.Ordinal);
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);
        Assert.Contains("default-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        foreach (var (path, type) in new[] { ("/app.js", "text/javascript"), ("/app.css", "text/css"), ("/favicon.svg", "image/svg+xml") })
        {
            using var asset = await client.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, asset.StatusCode);
            Assert.Equal(type, asset.Content.Headers.ContentType!.MediaType);
            var text = await asset.Content.ReadAsStringAsync();
            Assert.DoesNotContain("https://", text, StringComparison.Ordinal);
        }
        using var etagged = new HttpRequestMessage(HttpMethod.Get, "/app.js");
        etagged.Headers.TryAddWithoutValidation("If-None-Match", (await client.GetAsync("/app.js")).Headers.ETag!.Tag);
        Assert.Equal(HttpStatusCode.NotModified, (await client.SendAsync(etagged)).StatusCode);
    }

    public static TheoryData<string, string> BadRequests => new()
    {
        { """{"model": "nope"}""", "unknown model 'nope'; this server has tiny." },
        { """{"model": "../../etc/passwd"}""", "unknown model '../../etc/passwd'" },
        { """{"class": 6}""", "class 6 is out of range: model 'tiny' has classes 0 to 4 (and -1 samples unconditionally)." },
        { """{"class": -2}""", "class -2 is out of range" },
        { """{"class": "kangaroo"}""", "class 'kangaroo' is not a class of model 'tiny'" },
        { """{"class": 1.5}""", "'class' must be an integer, found 1.5." },
        { """{"count": 7}""", "count must be between 1 and 6 (this server's cap), found 7." },
        { """{"count": 0}""", "count must be between 1 and 6" },
        { """{"cfg": -0.5}""", "cfg must be a finite number ≥ 0, found -0.5." },
        { """{"cfg": "high"}""", "'cfg' must be a number, found a string." },
        { """{"top_p": 1.5}""", "top_p must be in [0, 1] (0 is off), found 1.5." },
        { """{"top_p": -0.1}""", "top_p must be in [0, 1]" },
        { """{"top_k": -1}""", "top_k must be between 0 (off) and the vocabulary size 16, found -1." },
        { """{"top_k": 17}""", "top_k must be between 0 (off) and the vocabulary size 16, found 17." },
        { """{"seed": -3}""", "seed must be between 0 and" },
        { """{"more_smooth": "yes"}""", "'more_smooth' must be true or false, found a string." },
        { """{"topk": 3}""", "unknown field 'topk'; the fields are model, class, count, cfg, top_k, top_p, seed, more_smooth, edit." },
        { """{"path": "/tmp/x"}""", "unknown field 'path'" },
        { """{"class": 3""", "the request body is not valid JSON" },
        { """{"count": 2, "count": 3}""", "the field 'count' is given twice; give each field once." },
        { """[1, 2]""", "the request body must be a JSON object" },
        { "", "the request body is empty" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadRequestsAre400WithOneClearSentence(string body, string expected)
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate(body);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        var error = (await response.ReadJson()).GetProperty("error").GetString()!;
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
        Assert.EndsWith(".", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
        Assert.Equal(0, _server.Queue.Stats().Accepted);
    }

    [Theory]
    [InlineData("/v1/generate")]
    [InlineData("/v1/generate/stream")]
    public async Task BodiesThatAreNotUtf8OrRepeatAFieldAre400(string path)
    {
        using var client = _server.CreateClient();
        byte[] notUtf8 = [.. "{\"class\": \""u8, 0xFF, .. "\"}"u8];
        using (var response = await client.PostAsync(path, new ByteArrayContent(notUtf8)))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("the request body is not valid UTF-8 text.", (await response.ReadJson()).GetProperty("error").GetString());
        }
        using (var response = await client.PostAsync(path, new StringContent("""{"seed": 1, "seed": 2}""")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("the field 'seed' is given twice; give each field once.", (await response.ReadJson()).GetProperty("error").GetString());
        }
        Assert.Equal(0, _server.Queue.Stats().Accepted);
    }

    [Fact]
    public async Task UnknownRoutesAndMethodsAnswerWithAJsonSentence()
    {
        using var client = _server.CreateClient();
        using (var missing = await client.GetAsync("/nope"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            Assert.Equal("there is nothing at /nope; the API is described at /openapi/v1.json.", (await missing.ReadJson()).GetProperty("error").GetString());
        }
        using (var wrong = await client.PutAsync("/healthz", new StringContent("{}")))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, wrong.StatusCode);
            Assert.Equal("PUT is not allowed on /healthz; use GET, HEAD.", (await wrong.ReadJson()).GetProperty("error").GetString());
        }
    }

    [Theory]
    [InlineData("/healthz", "application/json")]
    [InlineData("/v1/models", "application/json")]
    [InlineData("/", "text/html")]
    public async Task ReadOnlyRoutesAnswerHead(string path, string contentType)
    {
        using var client = _server.CreateClient();
        using var head = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, path));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(contentType, head.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task HeadDoesNotStartAStream()
    {
        using var client = _server.CreateClient();
        using var head = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/v1/generate/stream?class=1"));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, head.StatusCode);
        Assert.Equal(0, _server.Queue.Stats().Accepted);
    }

    [Theory]
    [InlineData("""{"class": "\ud800"}""")]
    [InlineData("""{"\udc00": 1}""")]
    public async Task AStringThatIsNoTextIsA400(string body)
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate(body);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.StartsWith("the request body holds a string that is not valid Unicode", (await response.ReadJson()).GetProperty("error").GetString());
    }

    [Theory]
    [InlineData("""{"seed": 9e15, "class": 1}""", HttpStatusCode.OK, null)]
    [InlineData("""{"seed": 2.0, "class": 1}""", HttpStatusCode.OK, null)]
    [InlineData("""{"seed": 9223372036854775808}""", HttpStatusCode.BadRequest, "'seed' is out of range, found 9.223372036854776e+18.")]
    public async Task IntegersWrittenAsFloatsAreIntegers(string body, HttpStatusCode status, string? error)
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate(body);
        Assert.Equal(status, response.StatusCode);
        if (error is not null) Assert.Equal(error, (await response.ReadJson()).GetProperty("error").GetString());
    }

    /// <summary>
    /// What the page's gallery restores for an image whose class was drawn: no class and the image's own seed, count 1.
    /// That gives the same class and bytes; naming the drawn class instead skips the label draw and changes the image.
    /// </summary>
    [Fact]
    public async Task ADrawnClassImageIsReproducedByItsSeedAloneNotByNamingItsClass()
    {
        using var client = _server.CreateClient();
        var batch = await (await client.Generate("""{"seed": 20, "count": 3, "cfg": 1}""")).ReadJson();
        var third = batch.GetProperty("images")[2];
        Assert.Equal(22, third.GetProperty("seed").GetInt64());
        var alone = (await (await client.Generate("""{"seed": 22, "cfg": 1}""")).ReadJson()).GetProperty("images")[0];
        Assert.Equal(third.GetProperty("class").GetInt32(), alone.GetProperty("class").GetInt32());
        Assert.Equal(third.Png(), alone.Png());
        int drawn = third.GetProperty("class").GetInt32();
        var named = (await (await client.Generate($$"""{"seed": 22, "cfg": 1, "class": {{drawn}}}""")).ReadJson()).GetProperty("images")[0];
        Assert.NotEqual(third.Png(), named.Png());
    }

    [Fact]
    public async Task AnyContentTypeIsReadAsJson()
    {
        using var client = _server.CreateClient();
        using var response = await client.PostAsync("/v1/generate", new StringContent("""{"class": 1, "seed": 2}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task ABodyStartingWithAByteOrderMarkIsReadAsJson()
    {
        using var client = _server.CreateClient();
        byte[] body = [.. "\uFEFF"u8, .. """{"class": 1, "seed": 2}"""u8];
        using var response = await client.PostAsync("/v1/generate", new ByteArrayContent(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task AnEditInAQueryStringIsRefusedWithWhereItBelongs()
    {
        using var client = _server.CreateClient();
        using var response = await client.GetAsync("/v1/generate/stream?class=1&edit=x");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("'edit' is accepted only in a POST body, since an image does not fit in a URL.",
            (await response.ReadJson()).GetProperty("error").GetString());
    }

    [Fact]
    public async Task AnOversizedBodyIs413()
    {
        using var client = _server.CreateClient();
        using var response = await client.Generate("{\"model\": \"" + new string('x', 70_000) + "\"}");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("larger than 64 KiB", (await response.ReadJson()).GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}
