using Microsoft.Playwright;
using VarSharp.Tests.Support;
using VarSharp.Web;
using Xunit.Abstractions;

namespace VarSharp.Tests.Web;

/// <summary>
/// A fact that drives Debian's Chromium. Without /usr/bin/chromium it is reported as skipped, loudly: the page was then
/// not tested end to end (scripts/setup.sh installs it). Playwright never downloads a browser here.
/// </summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string ChromiumPath = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(ChromiumPath))
            Skip = $"BROWSER TEST NOT RUN: {ChromiumPath} is missing, so the web page was NOT tested end to end. " +
                   "Install it with scripts/setup.sh (as root: apt-get install -y chromium).";
    }
}

/// <summary>
/// End to end: the real server (Kestrel on a free loopback port, built as `varsharp serve` builds it) and the page in
/// headless Chromium through Playwright: click Generate, watch every scale tile fill, find the image in the gallery,
/// reuse its settings, and save a screenshot. VARSHARP_E2E_MODEL=DIR serves another model folder and
/// VARSHARP_E2E_SCREENSHOT=PATH copies the screenshot there (how docs/images/web.png is made).
/// </summary>
public sealed class BrowserTests(TinyModelFolderFixture model, ITestOutputHelper output) : IClassFixture<TinyModelFolderFixture>
{
    private static readonly string[] ChromiumArgs =
        ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

    [ChromiumFact]
    public async Task GenerateFillsEveryScaleThenTheGalleryAndAClickReusesTheSettings()
    {
        await using var session = await Session.OpenAsync(model.Dir, height: 900);
        var (page, url, served, problems) = (session.Page, session.Url, session.Served, session.Problems);
        Assert.StartsWith("http://127.0.0.1:", url, StringComparison.Ordinal);

        await page.GotoAsync(url);
        // Random, one per class, and Unconditional.
        await Assertions.Expect(page.GetByTestId("classes").GetByRole(AriaRole.Radio)).ToHaveCountAsync(served.NumClasses + 2);
        // The header says what was verified at load: nothing for a plain folder, the manifest (or signature) for a bundle.
        if (served.Integrity.Check == "none") await Assertions.Expect(page.GetByTestId("integrity")).ToBeHiddenAsync();
        else await Assertions.Expect(page.GetByTestId("integrity")).ToBeVisibleAsync();
        var class2 = page.Locator("[data-class-id='2']");
        await class2.ClickAsync();
        await page.Locator("#cfg").FillAsync("3");
        await page.Locator("#seed").FillAsync("17");
        await page.GetByTestId("generate").ClickAsync();

        var final = page.Locator("[data-final='true'] img");
        await final.WaitForAsync(new LocatorWaitForOptions { Timeout = 60_000 });
        Assert.Equal(served.PatchNums.Count, await page.Locator(".tile.filled img").CountAsync());
        Assert.Equal(1, await page.Locator("#gallery .card").CountAsync());
        await Assertions.Expect(page.GetByTestId("status")).ToContainTextAsync("Done in");
        Assert.StartsWith("data:image/png;base64,", await final.GetAttributeAsync("src"), StringComparison.Ordinal);

        // A second run adds to the gallery; a click on the first image brings back its class, cfg and seed.
        await page.GetByTestId("generate").ClickAsync();
        await Assertions.Expect(page.Locator("#gallery .card")).ToHaveCountAsync(2, new() { Timeout = 60_000 });
        await page.Locator("#gallery .card").Last.ClickAsync();
        Assert.Equal("17", await page.Locator("#seed").InputValueAsync());
        Assert.Equal("3", await page.Locator("#cfg").InputValueAsync());
        Assert.Equal("true", await class2.GetAttributeAsync("aria-checked"));

        // Tiles fade in over a quarter second; a screenshot taken mid-fade shows the newest tiles lighter than they are.
        await page.WaitForFunctionAsync("() => document.getAnimations().every(a => a.playState !== 'running')");
        var shot = Path.Combine(AppContext.BaseDirectory, "web-e2e.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        if (Environment.GetEnvironmentVariable("VARSHARP_E2E_SCREENSHOT") is { Length: > 0 } copy) File.Copy(shot, copy, overwrite: true);
        output.WriteLine($"screenshot: {shot}");
        Assert.Empty(problems);
    }

    /// <summary>
    /// In-painting from the page: Edit on a gallery image, drag a box over it, Generate; the request carries the image
    /// and the box, and the result joins the gallery. VARSHARP_E2E_EDIT_SCREENSHOT=PATH copies the screenshot there.
    /// </summary>
    [ChromiumFact]
    public async Task EditRegeneratesTheBoxDraggedOverAGalleryImage()
    {
        await using var session = await Session.OpenAsync(model.Dir, height: 1000);
        var (page, url, served, problems) = (session.Page, session.Url, session.Served, session.Problems);
        var bodies = new List<string>();
        page.Request += (_, request) => { if (request.Method == "POST" && request.PostData is { } body) bodies.Add(body); };

        await page.GotoAsync(url);
        await page.Locator("[data-class-id='3']").ClickAsync();
        await page.Locator("#seed").FillAsync("5");
        await page.GetByTestId("generate").ClickAsync();
        await Assertions.Expect(page.Locator("#gallery .card")).ToHaveCountAsync(1, new() { Timeout = 60_000 });

        await page.Locator("#gallery .edit-this").First.ClickAsync();
        var canvas = page.GetByTestId("edit-canvas");
        await Assertions.Expect(canvas).ToBeVisibleAsync();
        // An image without a box is not silently ignored.
        await page.GetByTestId("generate").ClickAsync();
        await Assertions.Expect(page.GetByTestId("status")).ToContainTextAsync("Drag a box over the image to edit");
        var box = (await canvas.BoundingBoxAsync())!;
        await page.Mouse.MoveAsync(box.X + box.Width * 0.25f, box.Y + box.Height * 0.25f);
        await page.Mouse.DownAsync();
        await page.Mouse.MoveAsync(box.X + box.Width * 0.6f, box.Y + box.Height * 0.6f, new MouseMoveOptions { Steps = 4 });
        await page.Mouse.MoveAsync(box.X + box.Width * 0.75f, box.Y + box.Height * 0.75f, new MouseMoveOptions { Steps = 4 });
        await page.Mouse.UpAsync();
        int q = served.ImageSize / 4;
        await Assertions.Expect(page.GetByTestId("status")).ToContainTextAsync($"Box {q}, {q}, {3 * q}, {3 * q}");

        await page.GetByTestId("generate").ClickAsync();
        await Assertions.Expect(page.Locator("#gallery .card")).ToHaveCountAsync(2, new() { Timeout = 60_000 });
        await Assertions.Expect(page.Locator("#run-info")).ToContainTextAsync($"in-painting {q},{q},{3 * q},{3 * q}");
        Assert.Contains($"\"box\":[{q},{q},{3 * q},{3 * q}]", bodies[^1], StringComparison.Ordinal);
        Assert.Contains("\"image\":\"", bodies[^1], StringComparison.Ordinal);

        await page.WaitForFunctionAsync("() => document.getAnimations().every(a => a.playState !== 'running')");
        var shot = Path.Combine(AppContext.BaseDirectory, "web-edit-e2e.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        if (Environment.GetEnvironmentVariable("VARSHARP_E2E_EDIT_SCREENSHOT") is { Length: > 0 } copy) File.Copy(shot, copy, overwrite: true);
        Assert.Empty(problems);
    }

    /// <summary>
    /// The real server (Kestrel on a free loopback port, built as `varsharp serve` builds it; VARSHARP_E2E_MODEL=DIR
    /// serves another model) and a headless Chromium page whose console errors, failed requests and requests leaving
    /// the server are collected in <see cref="Problems"/>.
    /// </summary>
    private sealed class Session : IAsyncDisposable
    {
        private Microsoft.AspNetCore.Builder.WebApplication _app = null!;
        private IPlaywright _playwright = null!;
        private IBrowser _browser = null!;

        public IPage Page { get; private set; } = null!;
        public string Url { get; private set; } = "";
        public ServedModel Served { get; private set; } = null!;
        public List<string> Problems { get; } = [];

        public static async Task<Session> OpenAsync(string tinyModel, int height)
        {
            var given = Environment.GetEnvironmentVariable("VARSHARP_E2E_MODEL") is { Length: > 0 } m ? m : null;
            var source = given is null ? new ModelSource("tiny", tinyModel) : ModelSource.Parse(given);
            var s = new Session { _app = VarServer.Build(new ServeOptions { Urls = "http://127.0.0.1:0", Models = [source] }) };
            await s._app.StartAsync();
            s.Url = s._app.Urls.Single();
            s.Served = ((ModelRegistry)s._app.Services.GetService(typeof(ModelRegistry))!).Default;

            Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
            s._playwright = await Playwright.CreateAsync();
            s._browser = await s._playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ChromiumFactAttribute.ChromiumPath,
                Headless = true,
                Args = ChromiumArgs,
            });
            var page = s.Page = await s._browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1280, Height = height } });
            page.Console += (_, msg) => { if (msg.Type == "error") s.Problems.Add($"console: {msg.Text}"); };
            page.PageError += (_, error) => s.Problems.Add($"page error: {error}");
            page.RequestFailed += (_, request) => s.Problems.Add($"request failed: {request.Url}");
            page.Request += (_, request) =>
            {
                if (!request.Url.StartsWith(s.Url, StringComparison.Ordinal) && !request.Url.StartsWith("data:", StringComparison.Ordinal))
                    s.Problems.Add($"external request: {request.Url}");
            };
            return s;
        }

        public async ValueTask DisposeAsync()
        {
            if (_browser is not null) await _browser.DisposeAsync();
            _playwright?.Dispose();
            if (_app is not null)
            {
                await _app.StopAsync();
                await _app.DisposeAsync();
            }
        }
    }
}
