namespace VarSharp.Tests.Support;

/// <summary>
/// Locates ../shared (beside the repository) and discovers golden case folders: every folder under golden/ that holds
/// config.json + vectors.safetensors is a case, so cases added later run without code changes (and one that lacks its
/// weights fails, naming the file, rather than being passed over).
/// </summary>
public static class SharedData
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string SharedDir => Environment.GetEnvironmentVariable("VARSHARP_SHARED") is { Length: > 0 } s
        ? Path.GetFullPath(s)
        : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string GoldenDir => Path.Combine(SharedDir, "golden");

    public static bool HasGolden => Directory.Exists(GoldenDir);

    public static string MissingMessage => $"golden vectors not found: looked for {GoldenDir} (set VARSHARP_SHARED to the shared folder)";

    public static IEnumerable<string> GoldenCases() =>
        !HasGolden
            ? []
            : Directory.EnumerateDirectories(GoldenDir)
                .Where(d => File.Exists(Path.Combine(d, "config.json")) && File.Exists(Path.Combine(d, "vectors.safetensors")))
                .OrderBy(d => d, StringComparer.Ordinal);

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "VarSharp.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find VarSharp.slnx above the test binaries");
    }
}
