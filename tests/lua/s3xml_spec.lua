-- sbot.s3xml: S3 XML answers into plain tables (expat), robust to
-- unexpected elements.
local s3xml = require "sbot.s3xml"

local NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'

describe("sbot.s3xml", function()
  it("parses ListAllMyBucketsResult with one and with two buckets as arrays", function()
    local one = [[<?xml version="1.0" encoding="UTF-8"?>
<ListAllMyBucketsResult ]] .. NS .. [[><Owner><ID>123</ID><DisplayName>me</DisplayName></Owner>
<Buckets><Bucket><Name>artifacts</Name><CreationDate>2026-11-26T10:00:00.000Z</CreationDate></Bucket></Buckets>
</ListAllMyBucketsResult>]]
    local root, t = s3xml.parse(one)
    assert.are.equal("ListAllMyBucketsResult", root)
    assert.are.equal(1, #t.Buckets.Bucket)
    assert.are.equal("artifacts", t.Buckets.Bucket[1].Name)
    assert.are.equal("me", t.Owner.DisplayName)
    assert.is_nil(getmetatable(t.Buckets.Bucket))
  end)

  it("parses ListObjectsV2 with entities, empty elements and unknown elements", function()
    local doc = [[<ListBucketResult ]] .. NS .. [[>
  <Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>a &amp; b &lt;c&gt;</Key><LastModified>2026-11-26T10:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass>
    <ChecksumAlgorithm>SHA256</ChecksumAlgorithm><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus></Contents>
  <Contents><Key>x/y</Key><Size>0</Size><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag></Contents>
  <CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>
  <SomethingNew attr="1"><Nested>deep</Nested></SomethingNew>
</ListBucketResult>]]
    local root, t = s3xml.parse(doc)
    assert.are.equal("ListBucketResult", root)
    assert.are.equal("", t.Prefix)
    assert.are.equal("true", t.IsTruncated)
    assert.are.equal(2, #t.Contents)
    assert.are.equal("a & b <c>", t.Contents[1].Key)
    assert.are.equal('"9b2cf535f27731c974343645a3985328"', t.Contents[1].ETag)
    assert.are.equal("0", t.Contents[2].Size)
    assert.are.equal("dir/", t.CommonPrefixes[1].Prefix)
    assert.are.equal("deep", t.SomethingNew.Nested)
  end)

  it("parses ListVersionsResult with versions and delete markers interleaved", function()
    local doc = [[<ListVersionsResult ]] .. NS .. [[><Name>b</Name><IsTruncated>false</IsTruncated>
<Version><Key>k</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><Size>4</Size></Version>
<DeleteMarker><Key>k</Key><VersionId>v3</VersionId><IsLatest>false</IsLatest></DeleteMarker>
<Version><Key>k</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><Size>3</Size></Version>
</ListVersionsResult>]]
    local _, t = s3xml.parse(doc)
    assert.are.equal(2, #t.Version)
    assert.are.equal("v1", t.Version[2].VersionId)
    assert.are.equal(1, #t.DeleteMarker)
  end)

  it("parses Error documents and an error inside a 200 CompleteMultipartUpload", function()
    local root, t = s3xml.parse([[<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>]])
    assert.are.equal("Error", root)
    assert.are.equal("InternalError", t.Code)
    assert.matches("internal error", t.Message)
  end)

  it("parses DeleteResult with Deleted and Error entries", function()
    local _, t = s3xml.parse([[<DeleteResult ]] .. NS .. [[><Deleted><Key>a</Key></Deleted>
<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>]])
    assert.are.equal("a", t.Deleted[1].Key)
    assert.are.equal("AccessDenied", t.Error[1].Code)
  end)

  it("parses InitiateMultipartUploadResult, CopyObjectResult and versioning", function()
    local _, t = s3xml.parse([[<InitiateMultipartUploadResult ]] .. NS .. [[><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>]])
    assert.are.equal("VXBsb2FkIElE", t.UploadId)
    _, t = s3xml.parse([[<CopyObjectResult><LastModified>2026-11-26T10:00:00.000Z</LastModified><ETag>"abc"</ETag></CopyObjectResult>]])
    assert.are.equal('"abc"', t.ETag)
    local root
    root, t = s3xml.parse([[<VersioningConfiguration ]] .. NS .. [[/>]])
    assert.are.equal("VersioningConfiguration", root)
    assert.are.equal("", t)
    _, t = s3xml.parse([[<VersioningConfiguration ]] .. NS .. [[><Status>Enabled</Status></VersioningConfiguration>]])
    assert.are.equal("Enabled", t.Status)
  end)

  it("turns unknown repeated elements into arrays and honours a custom list set", function()
    local _, t = s3xml.parse("<R><X>1</X><X>2</X><X>3</X><Y>4</Y></R>")
    assert.are.same({ "1", "2", "3" }, t.X)
    _, t = s3xml.parse("<R><Y>4</Y></R>", { "Y" })
    assert.are.same({ "4" }, t.Y)
  end)

  it("returns nil and a message on malformed input", function()
    for _, bad in ipairs { "", "<a>", "<a></b>", "not xml", "<a>&bogus;</a>" } do
      local root, err = s3xml.parse(bad)
      assert.is_nil(root, bad)
      assert.matches("XML parse error", err)
    end
    assert.has_error(function() s3xml.parse(nil) end)
  end)

  it("escapes text for request bodies", function()
    assert.are.equal("a&amp;b&lt;c&gt;&quot;&apos;", s3xml.escape([[a&b<c>"']]))
  end)
end)
