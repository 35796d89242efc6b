using System.Diagnostics;
using VarSharp.Sampling;
using VarSharp.Tests.Evaluation;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests;

/// <summary>
/// The library as a NuGet package: packed from this build, referenced by a fresh console project outside the
/// repository (no Directory.Build.* of ours, so the GLIBCXX fix must come from the package's buildTransitive targets),
/// built, run on the bundled model, and its image compared with the one this process generates.
/// </summary>
[Trait("Category", "Package")]
public class PackageTests(ITestOutputHelper output)
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private const string Program = """
        using VarSharp.Sampling;

        using var pipe = VarPipeline.Load(args[0]);
        var images = pipe.Generate(pipe.DefaultOptions() with { Classes = [7], Count = 1, Seed = 3 });
        images[0].Save(args[1]);
        Console.WriteLine($"class {images[0].Class}, {images[0].Width}x{images[0].Height}");
        """;

    [Fact]
    public void APackedLibraryBuildsAndGeneratesInAFreshProject()
    {
        using var tmp = new TempFolder();
        // NuGet caches a package by id and version, so every run packs a version no earlier run used (removed at the end).
        var version = $"0.1.0-test.{Guid.NewGuid():N}";
        var feed = tmp.File("feed");
        var project = Path.Combine(SharedData.RepoRoot, "src", "VarSharp", "VarSharp.csproj");
        Run(SharedData.RepoRoot, TimeSpan.FromMinutes(2), "pack", project, "-c", Configuration, "--no-build", "-o", feed,
            $"-p:PackageVersion={version}", "--disable-build-servers", "--nologo");
        Assert.True(File.Exists(Path.Combine(feed, $"VarSharp.{version}.nupkg")), "dotnet pack wrote no package");

        var app = Directory.CreateDirectory(tmp.File("app")).FullName;
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="local" value="{feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="VarSharp" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), Program);
        try
        {
            Run(app, TimeSpan.FromMinutes(5), "build", "-c", "Release", "--disable-build-servers", "--nologo", "-v", "q");
            var png = tmp.File("app.png");
            var said = Run(app, TimeSpan.FromMinutes(1), Path.Combine(app, "bin", "Release", "net10.0", "App.dll"), BundledModelTests.BundleDir, png);
            Assert.Contains("class 7, 32x32", said);

            using var pipe = VarPipeline.Load(BundledModelTests.BundleDir);
            var expected = tmp.File("expected.png");
            pipe.Generate(pipe.DefaultOptions() with { Classes = [7], Count = 1, Seed = 3 })[0].Save(expected);
            Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(png));
        }
        finally
        {
            var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            var cached = Path.Combine(cache, "varsharp", version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
            var id = Path.GetDirectoryName(cached)!;
            if (Directory.Exists(id) && !Directory.EnumerateFileSystemEntries(id).Any()) Directory.Delete(id);
        }
    }

    /// <summary>Runs `dotnet ARGS` in <paramref name="dir"/>; fails the test with its output on a non-zero exit or a timeout.</summary>
    private string Run(string dir, TimeSpan limit, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} took longer than {limit}.");
        }
        string text = stdout.Result + stderr.Result;
        output.WriteLine($"$ dotnet {string.Join(' ', args)}\n{text}");
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', args)} exited {process.ExitCode}:\n{text}");
        return text;
    }
}
