namespace VarSharp.Tests.Support;

/// <summary>
/// A fact that needs the shared golden vectors: when they are missing it is reported as skipped, naming the folder it
/// looked in, rather than passing silently (xunit 2 has no way to skip from inside a running test).
/// </summary>
public sealed class GoldenFactAttribute : FactAttribute
{
    public GoldenFactAttribute()
    {
        if (!SharedData.HasGolden) Skip = SharedData.MissingMessage;
    }
}

/// <summary>The theory counterpart of <see cref="GoldenFactAttribute"/>; pair it with <see cref="GoldenCaseData"/>.</summary>
public sealed class GoldenTheoryAttribute : TheoryAttribute
{
    public GoldenTheoryAttribute()
    {
        if (!SharedData.HasGolden) Skip = SharedData.MissingMessage;
    }
}

/// <summary>Theory rows for each golden case folder name: <c>[GoldenTheory, MemberData(nameof(GoldenCaseData.Names), MemberType = typeof(GoldenCaseData))]</c>.</summary>
public static class GoldenCaseData
{
    public static IEnumerable<object[]> Names() =>
        SharedData.GoldenCases().Select(dir => new object[] { Path.GetFileName(dir) });
}
