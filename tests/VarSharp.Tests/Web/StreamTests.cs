using System.Net;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Web;

/// <summary>The Server-Sent Events stream: start, one scale event per scale (coarse to fine), then done.</summary>
public sealed class StreamTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly VarServerFactory _server = VarServerFactory.ForModel(model.Dir);

    public void Dispose() => _server.Dispose();

    [Fact]
    public async Task PostStreamSendsStartThenOneScaleEventPerScaleThenDone()
    {
        using var client = _server.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generate/stream") { Content = Api.Json("""{"class": 2, "count": 2, "seed": 5}""") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = await response.ReadAllEvents();

        Assert.Equal(["start", "scale", "scale", "scale", "scale", "done"], events.Select(e => e.Event));
        Assert.Equal([1, 2, 3, 4], events[0].Data.Get<int[]>("patch_nums")!);
        var scales = events.Where(e => e.Event == "scale").Select(e => e.Data).ToList();
        Assert.Equal([0, 1, 2, 3], scales.Select(s => s.GetProperty("index").GetInt32()));
        Assert.Equal([1, 2, 3, 4], scales.Select(s => s.GetProperty("patch_size").GetInt32()));
        Assert.All(scales, s => Assert.Equal(4, s.GetProperty("num_scales").GetInt32()));
        Assert.All(scales, s => Assert.Equal(2, s.GetProperty("images").GetArrayLength()));

        // The last scale's image is the final image; the done event equals POST /v1/generate with the same request.
        var done = events[^1].Data.GetProperty("images");
        for (int i = 0; i < 2; i++) Assert.Equal(done[i].Png(), scales[^1].GetProperty("images")[i].Png());
        Assert.NotEqual(scales[0].GetProperty("images")[0].Png(), scales[^1].GetProperty("images")[0].Png());
        using var plain = await client.Generate("""{"class": 2, "count": 2, "seed": 5}""");
        var plainImages = (await plain.ReadJson()).GetProperty("images");
        for (int i = 0; i < 2; i++) Assert.Equal(plainImages[i].Png(), done[i].Png());
    }

    [Fact]
    public async Task GetStreamTakesTheSameFieldsFromTheQuery()
    {
        using var client = _server.CreateClient();
        using var response = await client.GetAsync("/v1/generate/stream?class=4&seed=8&cfg=1.5&top_k=0&top_p=0", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = await response.ReadAllEvents();
        Assert.Equal(["start", "scale", "scale", "scale", "scale", "done"], events.Select(e => e.Event));
        var p = events[^1].Data.GetProperty("params");
        Assert.Equal((4, 8L, 1.5, 0, 0.0), (p.GetProperty("class").GetInt32(), p.GetProperty("seed").GetInt64(),
            p.GetProperty("cfg").GetDouble(), p.GetProperty("top_k").GetInt32(), p.GetProperty("top_p").GetDouble()));
    }

    [Fact]
    public async Task EventsCarryIdsAndAReconnectingEventSourceIsToldToStop()
    {
        using var client = _server.CreateClient();
        using var response = await client.GetAsync("/v1/generate/stream?class=1&seed=2");
        var text = await response.Content.ReadAsStringAsync();
        Assert.StartsWith("event: start\nid: start\ndata: {", text, StringComparison.Ordinal);
        Assert.Contains("event: scale\nid: scale-3\ndata: {", text, StringComparison.Ordinal);
        Assert.Contains("event: done\nid: done\ndata: {", text, StringComparison.Ordinal);

        using var reconnect = new HttpRequestMessage(HttpMethod.Get, "/v1/generate/stream?class=1&seed=2");
        reconnect.Headers.Add("Last-Event-ID", "done");
        using var again = await client.SendAsync(reconnect);
        Assert.Equal(HttpStatusCode.NoContent, again.StatusCode);
        Assert.Equal(1, _server.Queue.Stats().Accepted);
    }

    [Theory]
    [InlineData("/v1/generate/stream?class=9", "class 9 is out of range")]
    [InlineData("/v1/generate/stream?cfg=lots", "'cfg' must be a number, found a string.")]
    [InlineData("/v1/generate/stream?seed=1&seed=2", "query parameter 'seed' is given 2 times")]
    [InlineData("/v1/generate/stream?file=/etc/passwd", "unknown field 'file'")]
    public async Task ABadStreamRequestIsAPlain400BeforeAnyEvent(string url, string expected)
    {
        using var client = _server.CreateClient();
        using var response = await client.GetAsync(url);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.StartsWith(expected, (await response.ReadJson()).GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}
