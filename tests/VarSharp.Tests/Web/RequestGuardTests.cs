using System.Net;
using System.Text;
using VarSharp.Tests.Support;
using VarSharp.Web;

namespace VarSharp.Tests.Web;

/// <summary>
/// Other web sites cannot use a server on the user's machine: cross-origin POSTs, cross-site fetches of the stream and
/// host names nobody allowed (DNS rebinding) are refused before anything is queued; the server's own page, clients
/// that are not browsers, and what the operator allows go through.
/// </summary>
public sealed class RequestGuardTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>
{
    private const string Body = """{"class": 1, "seed": 3}""";

    private static HttpRequestMessage Post(string path, string? origin = null, string? host = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(Body, Encoding.UTF8, "text/plain") };
        if (origin is not null) request.Headers.Add("Origin", origin);
        if (host is not null) request.Headers.Host = host;
        return request;
    }

    // A GET as a browser marks it when a page of another site makes it (an image, an iframe, a link).
    private static HttpRequestMessage CrossSiteGet(string path, string mode)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("Sec-Fetch-Site", "cross-site");
        request.Headers.Add("Sec-Fetch-Mode", mode);
        return request;
    }

    [Fact]
    public async Task ACrossOriginPostIsRefusedBeforeItIsQueued()
    {
        using var server = VarServerFactory.ForModel(model.Dir);
        using var client = server.CreateClient();
        using var response = await client.SendAsync(Post("/v1/generate", origin: "http://evil.example"));
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("requests from http://evil.example are refused: a page of another origin may not use this server unless it is started with --allow-origin http://evil.example.",
            (await response.ReadJson()).GetProperty("error").GetString());
        using var stream = await client.SendAsync(Post("/v1/generate/stream", origin: "null"));
        Assert.Equal(HttpStatusCode.Forbidden, stream.StatusCode);
        Assert.Equal(0, server.Queue.Stats().Accepted);
    }

    [Fact]
    public async Task TheServersOwnPageAndNonBrowserClientsGoThrough()
    {
        using var server = VarServerFactory.ForModel(model.Dir);
        using var client = server.CreateClient();
        using (var own = await client.SendAsync(Post("/v1/generate", origin: "http://localhost")))
            Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        using (var plain = await client.SendAsync(Post("/v1/generate")))
            Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        Assert.Equal(2, server.Queue.Stats().Accepted);
    }

    [Fact]
    public async Task AnAllowedOriginGoesThrough()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { AllowedOrigins = ["http://localhost:3000"] });
        using var client = server.CreateClient();
        using (var allowed = await client.SendAsync(Post("/v1/generate", origin: "http://localhost:3000")))
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        using (var other = await client.SendAsync(Post("/v1/generate", origin: "http://localhost:4000")))
            Assert.Equal(HttpStatusCode.Forbidden, other.StatusCode);
    }

    /// <summary>An image tag or EventSource of another site sends no Origin on GET, but browsers mark it with Sec-Fetch-Site.</summary>
    [Fact]
    public async Task ACrossSiteFetchOfTheStreamIsRefusedButANavigationToThePageIsNot()
    {
        using var server = VarServerFactory.ForModel(model.Dir);
        using var client = server.CreateClient();
        var fetch = CrossSiteGet("/v1/generate/stream?class=1&seed=3", "no-cors");
        using (var refused = await client.SendAsync(fetch))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            Assert.StartsWith("requests from another site are refused", (await refused.ReadJson()).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        Assert.Equal(0, server.Queue.Stats().Accepted);

        var navigate = CrossSiteGet("/", "navigate");
        using var page = await client.SendAsync(navigate);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);

        // A hidden iframe (or window.open) on the stream is a navigation too, but it would generate: refused.
        var frame = CrossSiteGet("/v1/generate/stream?class=1&seed=3", "navigate");
        using (var framed = await client.SendAsync(frame)) Assert.Equal(HttpStatusCode.Forbidden, framed.StatusCode);
        // An EventSource of another origin sends Origin with its GET.
        var events = new HttpRequestMessage(HttpMethod.Get, "/v1/generate/stream?class=1&seed=3");
        events.Headers.Add("Origin", "http://evil.example");
        using (var refusedEvents = await client.SendAsync(events)) Assert.Equal(HttpStatusCode.Forbidden, refusedEvents.StatusCode);
        Assert.Equal(0, server.Queue.Stats().Accepted);
    }

    /// <summary>An allowed origin gets CORS answers: its page's preflight succeeds and it may read the response.</summary>
    [Fact]
    public async Task AnAllowedOriginGetsCorsAnswers()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { AllowedOrigins = ["http://localhost:3000"] });
        using var client = server.CreateClient();
        var preflight = new HttpRequestMessage(HttpMethod.Options, "/v1/generate");
        preflight.Headers.Add("Origin", "http://localhost:3000");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        preflight.Headers.Add("Access-Control-Request-Headers", "content-type");
        using (var answer = await client.SendAsync(preflight))
        {
            Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode);
            Assert.Equal("http://localhost:3000", answer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }
        using var post = await client.SendAsync(Post("/v1/generate", origin: "http://localhost:3000"));
        Assert.Equal(HttpStatusCode.OK, post.StatusCode);
        Assert.Equal("http://localhost:3000", post.Headers.GetValues("Access-Control-Allow-Origin").Single());
        // Retry-After is not CORS-safelisted: the page reads a 429's wait only if the server exposes it.
        Assert.Equal("Retry-After", post.Headers.GetValues("Access-Control-Expose-Headers").Single());
    }

    [Fact]
    public async Task AHostNameNobodyAllowedIsRefused()
    {
        using var server = VarServerFactory.ForModel(model.Dir);
        using var client = server.CreateClient();
        using (var rebound = await client.SendAsync(Post("/v1/generate", host: "rebind.example:5080")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, rebound.StatusCode);
            Assert.Equal("this server does not answer to the host name 'rebind.example'; use its IP address or localhost, or start it with --allowed-host rebind.example.",
                (await rebound.ReadJson()).GetProperty("error").GetString());
        }
        foreach (var host in new[] { "127.0.0.1:5080", "[::1]:5080", "localhost.:5080", "varsharp.localhost:5080" })
            using (var ok = await client.SendAsync(Post("/v1/generate", host: host)))
                Assert.True(ok.StatusCode == HttpStatusCode.OK, $"{host}: {ok.StatusCode}");

        using var named = VarServerFactory.ForModel(model.Dir, o => o with { AllowedHosts = ["rebind.example"] });
        using var namedClient = named.CreateClient();
        using var allowed = await namedClient.SendAsync(Post("/v1/generate", host: "rebind.example:5080"));
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Theory]
    [InlineData("localhost:3000")]
    [InlineData("http://localhost:3000/")]
    [InlineData("ftp://localhost")]
    public void AnOriginThatIsNotOneIsRefusedInOneSentence(string origin)
    {
        var options = new ServeOptions { Models = [new ModelSource("tiny", model.Dir)], AllowedOrigins = [origin] };
        var e = Assert.Throws<VarSharpException>(() => options.Validate());
        Assert.Equal($"'{origin}' is not an origin; give --allow-origin a scheme, host and optional port such as http://localhost:3000, or * for any.", e.Message);
    }
}
