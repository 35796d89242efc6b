using VarSharp.Tests.Support;
using VarSharp.Web;

namespace VarSharp.Tests.Cli;

/// <summary>`serve`: option errors and unloadable models are one sentence and exit 1 before anything listens.</summary>
public sealed class ServeCommandTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>, IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("tiny=/nonexistent/fashion-var", "error: cannot serve model 'tiny': folder /nonexistent/fashion-var does not exist.")]
    [InlineData("bad name=/tmp", "error: model name 'bad name' is not usable: use 1 to 64 letters, digits, '.', '_' or '-'.")]
    [InlineData("=/tmp", "error: model name '' is not usable")]
    [InlineData("x=", "error: --model 'x=' names no folder; expected NAME=DIR or DIR.")]
    public void ABadModelIsOneSentenceAndExit1(string value, string expected)
    {
        var run = CliRun.Of("serve", "--model", value, "--urls", "http://127.0.0.1:0");
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith(expected, run.Error, StringComparison.Ordinal);
        Assert.Single(run.Error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void AFolderThatIsNoModelNamesTheModelAndTheProblem()
    {
        var empty = Directory.CreateDirectory(_temp.File("empty")).FullName;
        var run = CliRun.Of("serve", "-m", "x=" + empty, "-m", "x=" + model.Dir);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: model name 'x' is given twice; give each --model its own NAME=.", run.Error.TrimEnd());

        run = CliRun.Of("serve", "-m", "x=" + empty);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("error: cannot serve model 'x': ", run.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--max-count", "0", "error: the per-request image cap must be at least 1, found 0.")]
    [InlineData("--max-batch", "0", "error: the batch size must be at least 1, found 0.")]
    [InlineData("--queue", "-1", "error: the queue capacity must be at least 1, found -1.")]
    [InlineData("--queue", "0", "error: the queue capacity must be at least 1, found 0.")]
    [InlineData("--timeout", "0", "error: --timeout must be more than 0 and at most 86400 seconds, found 0.")]
    [InlineData("--batch-window-ms", "-5", "error: --batch-window-ms must be between 0 and 10000, found -5.")]
    [InlineData("--threads", "0", "error: --threads must be at least 1 but is 0.")]
    public void BadLimitsAreRefused(string option, string value, string expected)
    {
        var run = CliRun.Of("serve", "-m", "tiny=" + model.Dir, option, value);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal(expected, run.Error.TrimEnd());
    }

    [Theory]
    [InlineData("notaurl")]
    [InlineData("127.0.0.1:5080")]
    [InlineData("http://127.0.0.1")]
    [InlineData("http://127.0.0.1:99999")]
    [InlineData("ftp://127.0.0.1:21")]
    public void AnAddressThatIsNotOneIsRefusedBeforeAnythingLoads(string urls)
    {
        var run = CliRun.Of("serve", "-m", "tiny=" + model.Dir, "--urls", urls);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"error: '{urls}' is not an address to listen on; give one like http://127.0.0.1:5080.", run.Error.TrimEnd());
    }

    [Fact]
    public void HttpsIsRefusedInOneSentence()
    {
        var run = CliRun.Of("serve", "-m", "tiny=" + model.Dir, "--urls", "https://127.0.0.1:5443");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: 'https://127.0.0.1:5443' asks for HTTPS, which serve does not configure (no certificate); listen on http:// and put a TLS proxy in front.", run.Error.TrimEnd());
    }

    [Fact]
    public void AnAddressInUseIsOneSentence()
    {
        var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
            var run = CliRun.Of("serve", "-m", "tiny=" + model.Dir, "--urls", $"http://127.0.0.1:{port}");
            Assert.Equal(1, run.ExitCode);
            // The reason is the operating system's wording; the sentence around it is ours.
            Assert.StartsWith($"error: cannot listen on http://127.0.0.1:{port}: ", run.Error, StringComparison.Ordinal);
            Assert.Single(run.Error.TrimEnd().Split('\n'));
        }
        finally
        {
            taken.Stop();
        }
    }

    [Fact]
    public void ABareFolderIsNamedAfterItself()
    {
        Assert.Equal(new ModelSource("fashion-var", "/m/fashion-var/"), ModelSource.Parse("/m/fashion-var/"));
        Assert.Equal(new ModelSource("a", "/m/b"), ModelSource.Parse(" a = /m/b "));
    }
}
