using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using VarSharp.Web;

namespace VarSharp.Tests.Web;

/// <summary>
/// The generation server in memory (WebApplicationFactory + TestServer), wired exactly as <see cref="VarServer.Build"/>
/// wires it (same services, same endpoints), over the options a test gives. The factory's type argument is this test
/// assembly's own type: .NET 10's factory wants an assembly with an entry point and a deps file (the test host's), and
/// the host itself comes from <see cref="CreateHostBuilder"/>, not from any Main.
/// </summary>
public sealed class VarServerFactory(ServeOptions options) : WebApplicationFactory<VarServerFactory>
{
    public ServeOptions Options { get; } = options;

    public GenerationQueue Queue => Services.GetRequiredService<GenerationQueue>();

    protected override IHostBuilder CreateHostBuilder() =>
        Host.CreateDefaultBuilder()
            .ConfigureLogging(l => l.ClearProviders())
            .ConfigureWebHost(web => web
                .ConfigureServices(s => s.AddVarServer(Options))
                .Configure(app =>
                {
                    app.UseVarServerRequestGuard();
                    app.UseVarServerStatusErrors();
                    app.UseRouting();
                    app.UseEndpoints(e => e.MapVarServer());
                }));

    /// <summary>The server needs no content root (the page is embedded); the test output folder stands in for one.</summary>
    protected override void ConfigureWebHost(IWebHostBuilder builder) => builder.UseContentRoot(AppContext.BaseDirectory);

    /// <summary>A tiny-model server with test-friendly limits (small batch window; everything else as given).</summary>
    public static VarServerFactory ForModel(string modelDir, Func<ServeOptions, ServeOptions>? edit = null)
    {
        var options = new ServeOptions { Models = [new ModelSource("tiny", modelDir)], BatchWindow = TimeSpan.FromMilliseconds(2) };
        return new VarServerFactory(edit is null ? options : edit(options));
    }

    /// <summary>Polls <paramref name="condition"/> until it holds (10 s at most).</summary>
    public static async Task Eventually(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}

/// <summary>HTTP helpers for the API tests.</summary>
internal static class Api
{
    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    public static Task<HttpResponseMessage> Generate(this HttpClient client, string body, CancellationToken ct = default) =>
        client.PostAsync("/v1/generate", Json(body), ct);

    public static async Task<JsonElement> ReadJson(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static byte[] Png(this JsonElement image) => Convert.FromBase64String(image.GetProperty("png").GetString()!);

    /// <summary>Reads Server-Sent Events (event name + JSON data) until the stream ends.</summary>
    public static async IAsyncEnumerable<(string Event, JsonElement Data)> ReadEvents(this HttpResponseMessage response)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        string name = "message";
        var data = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0) yield return (name, JsonDocument.Parse(data.ToString()).RootElement.Clone());
                name = "message";
                data.Clear();
            }
            else if (line.StartsWith("event:", StringComparison.Ordinal)) name = line[6..].Trim();
            else if (line.StartsWith("data:", StringComparison.Ordinal)) data.Append(line[5..].TrimStart());
        }
    }

    public static async Task<List<(string Event, JsonElement Data)>> ReadAllEvents(this HttpResponseMessage response)
    {
        var all = new List<(string, JsonElement)>();
        await foreach (var e in response.ReadEvents()) all.Add(e);
        return all;
    }

    public static T? Get<T>(this JsonElement e, string name) => e.GetProperty(name).Deserialize<T>();
}
